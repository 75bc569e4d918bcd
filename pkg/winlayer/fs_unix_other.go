//go:build unix && !linux

package winlayer

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// openDirBeneath opens dir (relative to rootFD) as a directory one component at
// a time, refusing symbolic links (O_NOFOLLOW) and "..": what openat2's
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS does on Linux, so a link planted by an
// earlier entry can never redirect a later write outside the layer.
func openDirBeneath(rootFD int, dir string) (int, error) {
	fd, err := unix.Dup(rootFD)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(dir, "/") {
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%w: %s", ErrInsecurePath, dir)
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				return -1, fmt.Errorf("%w: %s or one of its parents is a file or a reparse point", ErrParentNotDirectory, dir)
			}
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// syncFS flushes every file system to stable storage: without syncfs(2) the
// one holding fd cannot be flushed alone.
func syncFS(fd int) error { return unix.Sync() }

// freeBytes returns the bytes free for unprivileged use on the file system
// holding fd.
func freeBytes(fd int) (uint64, bool) {
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) != nil || sfs.Bavail < 0 {
		return 0, false
	}
	return uint64(sfs.Bavail) * uint64(sfs.Bsize), true
}
