// Package loop attaches regular files as Linux loop block devices.
//
// # Model
//
// [Attach] asks /dev/loop-control for a free device, opens /dev/loopN and binds
// the backing file to it with one LOOP_CONFIGURE ioctl, so the offset, size
// limit and flags are in place before any other process can see the device.
// The returned [Device] keeps /dev/loopN open until [Device.Detach],
// [Device.Close] or [Device.Release].
//
// # Autoclear and crash safety
//
// With [Options.AutoClear] the kernel detaches the device by itself when its
// last user goes away: the Device's own handle, every mount of the device and
// any other process that opened it. That is the setting to use when the
// device is mounted and the caller wants the attachment to end with the
// mount, and it is what keeps a crashed caller from leaking devices: the
// process exit closes its handle. Without AutoClear a device stays attached
// after a crash; [Find] lists the devices backed by a file so that a later
// run can detach them.
//
// # Errors
//
// Failures are returned as [*Error], which names the operation, the backing
// file and the device. Callers test the class with errors.Is: [ErrBusy] when
// a device is still in use (mounted), [ErrNoFreeDevice] when every attempt to
// claim a free device lost a race, and errors.ErrUnsupported on kernels or
// platforms without loop devices or LOOP_CONFIGURE.
//
// # Concurrency
//
// Attach and Find may be called from any number of goroutines and processes.
// Two callers can be handed the same free device; the loser gets EBUSY from
// LOOP_CONFIGURE and Attach retries with another device, a bounded number of
// times. The methods of one Device are safe for concurrent use.
//
// # Hazards
//
// Detach tells a mounted device from an idle one by an exclusive open, which
// a mount racing with Detach can slip past; the kernel then defers the
// detach to the last unmount instead of failing. While a Device is open its
// attachment cannot be replaced by another process's: LOOP_CLR_FD from
// elsewhere only marks it for clearing at the Device's close.
package loop

import (
	"errors"
	"fmt"
)

// Options controls how [Attach] binds a file to a loop device.
type Options struct {
	// ReadOnly opens the backing file and the device read-only and sets
	// LO_FLAGS_READ_ONLY: writes to the device fail with EPERM.
	ReadOnly bool

	// Offset is the byte offset in the backing file where the device starts.
	Offset int64

	// SizeLimit is the device size in bytes, counted from Offset. Zero means
	// up to the end of the file. Use it to keep a trailing structure such as a
	// VHD footer out of the device.
	SizeLimit int64

	// DirectIO asks the kernel to bypass the page cache for the backing file
	// (LO_FLAGS_DIRECT_IO). The kernel falls back to buffered I/O when the
	// backing file system or the alignment of Offset does not allow it;
	// /sys/block/loopN/loop/dio tells which one is in use.
	DirectIO bool

	// AutoClear sets LO_FLAGS_AUTOCLEAR: the kernel detaches the device when
	// its last user (the Device's handle, a mount, another opener) closes it.
	// It is the recommended setting and the one callers should pass unless
	// they want the attachment to outlive the process; Go's zero value leaves
	// it off, so it must be set explicitly. See the package documentation.
	AutoClear bool
}

// Errors returned by this package, wrapped in an [*Error].
var (
	// ErrBusy means the device is still in use, usually because it is
	// mounted. Unmount it first, or attach with AutoClear and call
	// Device.Release so that the kernel detaches it at the last unmount.
	// errors.Is also matches unix.EBUSY on Linux.
	ErrBusy = errors.New("loop: device busy")

	// ErrNoFreeDevice means Attach lost the race for a free device to other
	// attachers on every attempt.
	ErrNoFreeDevice = errors.New("loop: no free loop device")
)

// Error records a failed operation on a loop device.
type Error struct {
	Op     string // "attach", "detach", "find"
	Path   string // backing file, if known
	Device string // /dev/loopN, if known
	Err    error
}

func (e *Error) Error() string {
	s := "loop: " + e.Op
	if e.Path != "" {
		s += " " + e.Path
	}
	if e.Device != "" {
		s += " (" + e.Device + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// unsupported wraps errors.ErrUnsupported with the reason.
func unsupported(reason string) error {
	return fmt.Errorf("%s: %w", reason, errors.ErrUnsupported)
}
