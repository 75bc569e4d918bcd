package cim

import "golang.org/x/sys/unix"

// freeSpace returns the bytes free to unprivileged users on the filesystem of dir.
func freeSpace(dir string) uint64 {
	var sfs unix.Statfs_t
	if unix.Statfs(dir, &sfs) != nil {
		return ^uint64(0)
	}
	return sfs.Bavail * uint64(sfs.Bsize)
}
