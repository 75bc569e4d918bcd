//go:build unix

package cimfs

import "golang.org/x/sys/unix"

// processMayExist reports whether process pid may still run: kill(pid, 0)
// says ESRCH only when it does not.
func processMayExist(pid int) bool { return unix.Kill(pid, 0) != unix.ESRCH }
