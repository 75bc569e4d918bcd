//go:build !linux

package state

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// ErrLocked means TryLock found the lock held by another open file.
var ErrLocked = errors.New("state: entry locked by another process")

// Lock is a held lock; on this system locks are not supported.
type Lock struct{ f *os.File }

func (l *Lock) File() *os.File { return l.f }
func (l *Lock) Close() error   { return l.f.Close() }

var errNoLocks = fmt.Errorf("state: locks on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// LockFile returns an error matching errors.ErrUnsupported.
func LockFile(path string) (*Lock, error) { return nil, errNoLocks }

// TryLock returns an error matching errors.ErrUnsupported.
func TryLock(path string) (*Lock, error) { return nil, errNoLocks }

// Held reports false.
func Held(path string) bool { return false }
