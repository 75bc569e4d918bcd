package winlayer

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const upperSupported = true

// Extended attributes overlayfs keeps in an upper directory, under trusted.
// (the default) or user. (a union mounted with userxattr).
var (
	xattrOpaque   = []string{"trusted.overlay.opaque", "user.overlay.opaque"}
	xattrRedirect = []string{"trusted.overlay.redirect", "user.overlay.redirect"}
	xattrMetacopy = []string{"trusted.overlay.metacopy", "user.overlay.metacopy"}
	xattrWhiteout = []string{"trusted.overlay.whiteout", "user.overlay.whiteout"}
)

// statUpper describes one name of an overlayfs upper directory without following
// a symbolic link: its stat (with the birth time where the file system keeps one)
// and the overlayfs markers that matter.
func statUpper(path string) (upperStat, error) {
	var sx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
		return upperStat{}, &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	ts := func(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }
	st := upperStat{
		size:  int64(sx.Size),
		nlink: uint64(sx.Nlink),
		dev:   unix.Mkdev(sx.Dev_major, sx.Dev_minor),
		ino:   sx.Ino,
		atime: ts(sx.Atime),
		mtime: ts(sx.Mtime),
		ctime: ts(sx.Ctime),
	}
	if sx.Mask&unix.STATX_BTIME != 0 {
		st.btime = ts(sx.Btime)
	}
	switch uint32(sx.Mode) & unix.S_IFMT {
	case unix.S_IFREG:
		if has, err := hasXattr(path, xattrMetacopy); err != nil {
			return st, err
		} else if has {
			st.unsupported = "a metadata-only copy-up (metacopy)"
		}
		if st.size == 0 {
			has, err := hasXattr(path, xattrWhiteout)
			if err != nil {
				return st, err
			}
			st.whiteout = has
		}
	case unix.S_IFDIR:
		st.mode = fs.ModeDir
		v, err := getXattr(path, xattrOpaque)
		if err != nil {
			return st, err
		}
		st.opaque = v == "y"
		if has, err := hasXattr(path, xattrRedirect); err != nil {
			return st, err
		} else if has {
			st.unsupported = "a renamed directory (redirect_dir)"
		}
	case unix.S_IFLNK:
		st.mode = fs.ModeSymlink
	case unix.S_IFCHR:
		st.mode = fs.ModeDevice | fs.ModeCharDevice
		st.whiteout = sx.Rdev_major == 0 && sx.Rdev_minor == 0
	case unix.S_IFBLK:
		st.mode = fs.ModeDevice
	case unix.S_IFIFO:
		st.mode = fs.ModeNamedPipe
	case unix.S_IFSOCK:
		st.mode = fs.ModeSocket
	default:
		st.mode = fs.ModeIrregular
	}
	return st, nil
}

// getXattr returns the value of the first of names that path has, or "".
func getXattr(path string, names []string) (string, error) {
	var buf [16]byte
	for _, n := range names {
		sz, err := unix.Lgetxattr(path, n, buf[:])
		switch {
		case err == nil:
			return string(buf[:sz]), nil
		case errors.Is(err, unix.ERANGE):
			return "?", nil // longer than any marker value: present
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM):
		default:
			return "", &fs.PathError{Op: "getxattr " + n, Path: path, Err: err}
		}
	}
	return "", nil
}

func hasXattr(path string, names []string) (bool, error) {
	for _, n := range names {
		_, err := unix.Lgetxattr(path, n, nil)
		switch {
		case err == nil, errors.Is(err, unix.ERANGE):
			return true, nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM):
		default:
			return false, &fs.PathError{Op: "getxattr " + n, Path: path, Err: err}
		}
	}
	return false, nil
}

// openNoFollow opens path for reading, refusing a symbolic link.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// fileTimes returns the access and change times of a file.
func fileTimes(fi fs.FileInfo) (atime, ctime time.Time) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec), time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime(), fi.ModTime()
}
