//go:build !linux

package main

import "errors"

// mknodWhiteout fails: overlay whiteouts are a Linux thing, and main refuses to run
// elsewhere.
func mknodWhiteout(path string) error { return errors.ErrUnsupported }
