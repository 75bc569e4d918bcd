//go:build !unix

package cim

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("cim: lock held")

// flock is a no-op where there is no flock: one writer per layer is then the
// caller's duty.
func flock(*os.File) error { return nil }
