package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrLocked means TryLock found the lock held by another open file: an
// operation or a helper is at work on the entry.
var ErrLocked = errors.New("state: entry locked by another process")

// Lock is a held flock on a lock file.
type Lock struct {
	f *os.File
}

// File returns the open lock file, to hand to a helper process that keeps
// the lock after the caller lets go (the lock belongs to the open file
// description, which the helper then shares).
func (l *Lock) File() *os.File { return l.f }

// Close releases the lock.
func (l *Lock) Close() error { return l.f.Close() }

// LockFile takes the lock file path (creating it, and its directory), waiting
// while another holds it. If the holder removed the file (it finished with
// the entry), Lock starts again with the new one.
func LockFile(path string) (*Lock, error) { return lockFile(path, true, true) }

// TryLock is LockFile without waiting and without creating anything: a held lock
// gives ErrLocked, a missing file an error matching fs.ErrNotExist.
func TryLock(path string) (*Lock, error) { return lockFile(path, false, false) }

func lockFile(path string, wait, create bool) (*Lock, error) {
	for {
		if create {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, err
			}
		}
		flag := os.O_RDONLY
		if create {
			flag = os.O_RDWR | os.O_CREATE
		}
		f, err := os.OpenFile(path, flag, 0o600)
		if create && errors.Is(err, fs.ErrNotExist) {
			continue // its directory was removed between MkdirAll and OpenFile
		}
		if err != nil {
			return nil, err
		}
		how := unix.LOCK_EX
		if !wait {
			how |= unix.LOCK_NB
		}
		if err := flockRetry(int(f.Fd()), how); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s", ErrLocked, path)
			}
			return nil, err
		}
		// The holder before us may have removed the entry: our lock is then
		// on a file nobody else will find.
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
			f.Close()
			if !create {
				return nil, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
			}
			continue
		}
		return &Lock{f: f}, nil
	}
}

func flockRetry(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Held reports whether someone holds the lock file path: false when the
// file is missing or its lock is free (the entry's owner is gone).
func Held(path string) bool {
	l, err := TryLock(path)
	if err == nil {
		l.Close()
		return false
	}
	return errors.Is(err, ErrLocked)
}
