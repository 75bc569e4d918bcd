//go:build unix

package cim

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// errWouldBlock: the lock is held by another writer.
var errWouldBlock = unix.EWOULDBLOCK

// flock takes the exclusive lock of f without waiting. The lock belongs to
// the open file, so it ends when f is closed or the process dies.
func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
