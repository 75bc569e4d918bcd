package winlayer

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// openDirBeneath opens dir (relative to rootFD) as a directory without following any
// symbolic link on the way and without leaving rootFD: a link planted by an earlier
// entry can never redirect a later write outside the layer.
func openDirBeneath(rootFD int, dir string) (int, error) {
	fd, err := unix.Openat2(rootFD, dir, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == nil {
		return fd, nil
	}
	switch {
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		return -1, fmt.Errorf("%w: %s or one of its parents is a file or a reparse point", ErrParentNotDirectory, dir)
	case errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("%w: %s", ErrInsecurePath, dir)
	}
	return -1, err
}

// syncFS flushes the file system holding fd to stable storage.
func syncFS(fd int) error { return unix.Syncfs(fd) }

// freeBytes returns the bytes free for unprivileged use on the file system
// holding fd.
func freeBytes(fd int) (uint64, bool) {
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) != nil {
		return 0, false
	}
	return sfs.Bavail * uint64(sfs.Bsize), true
}
