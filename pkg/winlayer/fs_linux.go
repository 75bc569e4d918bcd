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

func lstatAt(dirFD int, base string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	return &st, nil
}

func isDirMode(m uint32) bool     { return m&unix.S_IFMT == unix.S_IFDIR }
func isSymlinkMode(m uint32) bool { return m&unix.S_IFMT == unix.S_IFLNK }
func isRegMode(m uint32) bool     { return m&unix.S_IFMT == unix.S_IFREG }
