//go:build unix

package wcowunion

import "golang.org/x/sys/unix"

// mkWhiteout makes an overlay whiteout, a 0/0 character device, at p.
func mkWhiteout(p string) error { return unix.Mknod(p, unix.S_IFCHR, 0) }
