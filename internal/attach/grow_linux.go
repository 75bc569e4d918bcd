package attach

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/state"
)

// Grow grows the disk of an attachment (given by device or disk file) to
// size bytes, and its loop device with it, while attached and even while
// mounted; the file system on it is not touched. A disk already as large is
// left alone. Formats that cannot grow give an error matching ErrCannotGrow.
func Grow(ctx context.Context, deviceOrDisk string, size int64) (*Attachment, error) {
	a, err := find(deviceOrDisk)
	if err != nil {
		return nil, &Error{Op: "grow", Path: deviceOrDisk, Err: err}
	}
	fail := func(err error) (*Attachment, error) {
		return nil, &Error{Op: "grow", Path: a.Disk, Device: a.Device, Err: err}
	}
	if size <= a.Size {
		return a, nil
	}
	if a.ReadOnly {
		return fail(fmt.Errorf("attached read-only: %w", os.ErrPermission))
	}
	if size%512 != 0 {
		return fail(fmt.Errorf("size %d is not a multiple of 512", size))
	}
	dir := filepath.Join(StateDir(), a.ID)
	lock, err := state.TryLock(filepath.Join(dir, lockFile))
	if errors.Is(err, state.ErrLocked) {
		return fail(fmt.Errorf("%w: another operation on this attachment is in progress", ErrBusy))
	}
	if err != nil {
		return fail(err)
	}
	defer lock.Close()
	if !boundTo(a) {
		return fail(fmt.Errorf("%s is no longer bound to %s", a.Device, a.BackingFile))
	}
	switch {
	case a.RawView:
		// The view's helper grows the disk it has open.
		if err := os.Truncate(a.BackingFile, size); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fail(fmt.Errorf("%w (%s)", ErrCannotGrow, a.Format))
			}
			return fail(err)
		}
	default:
		// The loop device covers [0, old size): the footer of a fixed VHD
		// moves outside of it.
		if _, err := growFile(a.Disk, size, a.Format == FormatRaw); err != nil {
			return fail(err)
		}
	}
	if err := setCapacity(a, size); err != nil {
		return fail(err)
	}
	a.Size = size
	if err := writeRecord(dir, a); err != nil {
		return fail(err)
	}
	return a, nil
}

// setCapacity makes the loop device of a see size bytes: a fixed VHD's
// device ends before the footer, so its limit moves; others follow the file.
func setCapacity(a *Attachment, size int64) error {
	if a.Format == FormatVHDFixed {
		return loop.Resize(a.Device, size)
	}
	return loop.Resize(a.Device, 0)
}
