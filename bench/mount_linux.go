package main

import "golang.org/x/sys/unix"

// mknodWhiteout makes an overlay whiteout, a 0/0 character device, at path.
func mknodWhiteout(path string) error { return unix.Mknod(path, unix.S_IFCHR, 0) }
