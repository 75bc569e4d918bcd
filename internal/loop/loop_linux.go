package loop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	controlPath = "/dev/loop-control"

	// maxAttempts bounds how often Attach asks for a free device after
	// losing the race for one to another attacher.
	maxAttempts = 64

	// detachWait bounds how long Detach waits for the kernel to finish
	// detaching after the last close, which other short-lived openers (udev,
	// blkid) can delay.
	detachWait = 2 * time.Second
)

// Test hooks. testHookGotFree runs after LOOP_CTL_GET_FREE returned n and
// before the device is configured; busyRetries counts attempts that lost the
// race for a device.
var (
	testHookGotFree func(n int)
	busyRetries     atomic.Int64
)

// Device is a loop device attached by [Attach]. It keeps /dev/loopN open
// until Detach, Close or Release.
type Device struct {
	path    string // /dev/loopN
	name    string // loopN
	backing string // backing file as /sys/block/loopN/loop/backing_file showed it at attach

	mu sync.Mutex // guards fd
	fd int        // open /dev/loopN, -1 once detached or released
}

// Attach binds the file at path to a free loop device configured by opts.
//
// The device is claimed with LOOP_CTL_GET_FREE and configured with a single
// LOOP_CONFIGURE ioctl; when another process configures the same device first
// (EBUSY), Attach retries with the next free device, up to a fixed number of
// times, then fails with [ErrNoFreeDevice]. On failure nothing stays
// attached or open. Kernels without LOOP_CONFIGURE (before 5.8) are
// reported with an error wrapping errors.ErrUnsupported.
func Attach(path string, opts Options) (*Device, error) {
	fail := func(dev string, err error) (*Device, error) {
		return nil, &Error{Op: "attach", Path: path, Device: dev, Err: err}
	}
	if opts.Offset < 0 || opts.SizeLimit < 0 {
		return fail("", fmt.Errorf("negative offset (%d) or size limit (%d)", opts.Offset, opts.SizeLimit))
	}
	mode := unix.O_RDWR
	if opts.ReadOnly {
		mode = unix.O_RDONLY
	}

	bfd, err := unix.Open(path, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("", fmt.Errorf("opening backing file: %w", err))
	}
	// LOOP_CONFIGURE takes its own reference to the file.
	defer unix.Close(bfd)

	cfg := unix.LoopConfig{Fd: uint32(bfd)}
	cfg.Info.Offset = uint64(opts.Offset)
	cfg.Info.Sizelimit = uint64(opts.SizeLimit)
	if opts.ReadOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	if opts.AutoClear {
		cfg.Info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	}
	if opts.DirectIO {
		cfg.Info.Flags |= unix.LO_FLAGS_DIRECT_IO
	}
	name := path
	if abs, err := filepath.Abs(path); err == nil {
		name = abs
	}
	copy(cfg.Info.File_name[:unix.LO_NAME_SIZE-1], name)

	ctl, err := unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return fail("", unsupported(controlPath+" is missing (is the loop module loaded?)"))
	}
	if err != nil {
		return fail("", fmt.Errorf("opening %s: %w", controlPath, err))
	}
	defer unix.Close(ctl)

	for range maxAttempts {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fail("", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err))
		}
		if testHookGotFree != nil {
			testHookGotFree(n)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		lfd, err := unix.Open(dev, mode|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
			// Removed by LOOP_CTL_REMOVE between the two calls.
			busyRetries.Add(1)
			continue
		}
		if err != nil {
			return fail(dev, fmt.Errorf("opening device: %w", err))
		}
		err = unix.IoctlLoopConfigure(lfd, &cfg)
		if err == nil {
			d := &Device{path: dev, name: "loop" + strconv.Itoa(n), fd: lfd}
			d.backing, _ = readBackingFile(d.name)
			return d, nil
		}
		unix.Close(lfd)
		switch {
		case errors.Is(err, unix.EBUSY):
			// Another attacher configured this device first.
			busyRetries.Add(1)
			continue
		case errors.Is(err, unix.ENOTTY):
			return fail(dev, unsupported("LOOP_CONFIGURE (Linux 5.8 or newer is needed)"))
		}
		return fail(dev, fmt.Errorf("LOOP_CONFIGURE: %w", err))
	}
	return fail("", fmt.Errorf("%w after %d attempts", ErrNoFreeDevice, maxAttempts))
}

// Path returns the device node, /dev/loopN.
func (d *Device) Path() string { return d.path }

// Detach detaches the device from its backing file and closes the Device.
// Calling it again, or after Release, returns nil.
//
// A device that is mounted cannot be detached: Detach then returns an error
// wrapping [ErrBusy] and the Device stays attached and usable. Unmount first,
// or, if the device was attached with AutoClear, call Release and let the
// kernel detach it at the last unmount.
//
// Detach waits briefly for the kernel to finish; a process that still holds
// the device open (a udev probe, say) delays the detach until it closes it.
func (d *Device) Detach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	fail := func(err error) error {
		return &Error{Op: "detach", Path: d.backing, Device: d.path, Err: err}
	}
	// A mounted file system holds the block device exclusively, so an
	// exclusive open fails with EBUSY. Since Linux 5.x LOOP_CLR_FD no longer
	// refuses a busy device but defers the detach, so this is the only way
	// to tell the caller.
	probe, err := unix.Open(d.path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return fail(fmt.Errorf("%w: %w (unmount it first, or attach with AutoClear and call Release)", ErrBusy, unix.EBUSY))
	}
	if err == nil {
		unix.Close(probe)
	}
	if err := unix.IoctlSetInt(d.fd, unix.LOOP_CLR_FD, 0); err != nil {
		switch {
		case errors.Is(err, unix.ENXIO):
			// Already detached, by another process or a DetachPath call.
		case errors.Is(err, unix.EBUSY):
			// Older kernels refuse instead of deferring.
			return fail(fmt.Errorf("%w: %w (unmount it first, or attach with AutoClear and call Release)", ErrBusy, err))
		default:
			return fail(fmt.Errorf("LOOP_CLR_FD: %w", err))
		}
	}
	unix.Close(d.fd)
	d.fd = -1
	d.waitDetached()
	return nil
}

// waitDetached waits up to detachWait until the device is no longer bound to
// the file it was attached to.
func (d *Device) waitDetached() {
	deadline := time.Now().Add(detachWait)
	for {
		b, err := readBackingFile(d.name)
		if err != nil || b != d.backing || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Release closes the Device's handle without detaching it. With AutoClear
// the kernel detaches the device once its other users (mounts, openers) are
// gone, immediately if there are none; without AutoClear the device stays
// attached until DetachPath. Calling it again, or after Detach, returns nil.
func (d *Device) Release() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return &Error{Op: "release", Path: d.backing, Device: d.path, Err: err}
	}
	return nil
}

// Close is Detach.
func (d *Device) Close() error { return d.Detach() }

// DetachPath detaches the loop device at devicePath (/dev/loopN), for
// example one returned by [Find] after a crash. A device that is not
// attached is not an error. Unlike Device.Detach it does not check for
// mounts: the kernel defers the detach of a busy device until its last user
// closes it.
func DetachPath(devicePath string) error {
	fd, err := unix.Open(devicePath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "detach", Device: devicePath, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return &Error{Op: "detach", Device: devicePath, Err: fmt.Errorf("LOOP_CLR_FD: %w", err)}
	}
	return nil
}

// Find returns the loop devices (/dev/loopN, in device order) whose backing
// file is backingFile, as /sys/block/loop*/loop/backing_file reports it. Use
// it to clean up devices left attached by a caller that crashed without
// AutoClear (with AutoClear the kernel detaches once the last user closes
// the device). The comparison is by path as seen in the caller's mount
// namespace, after resolving symlinks; a backing file deleted since the
// attach still matches.
func Find(backingFile string) ([]string, error) {
	want, err := filepath.Abs(backingFile)
	if err != nil {
		return nil, &Error{Op: "find", Path: backingFile, Err: err}
	}
	if r, err := filepath.EvalSymlinks(want); err == nil {
		want = r
	}
	paths, err := scan(func(b string) bool { return b == want })
	if err != nil {
		return nil, &Error{Op: "find", Path: backingFile, Err: err}
	}
	return paths, nil
}

// FindUnder returns the loop devices (/dev/loopN, in device order) whose
// backing file is dir or below it, deleted since or not, as sysfs reports
// them. It reads sysfs only and opens no device, so unlike losetup -a it never
// holds another process's device open (which would delay an autoclear).
func FindUnder(dir string) ([]string, error) {
	want, err := filepath.Abs(dir)
	if err != nil {
		return nil, &Error{Op: "find", Path: dir, Err: err}
	}
	if r, err := filepath.EvalSymlinks(want); err == nil {
		want = r
	}
	prefix := strings.TrimSuffix(want, "/") + "/"
	paths, err := scan(func(b string) bool { return b == want || strings.HasPrefix(b, prefix) })
	if err != nil {
		return nil, &Error{Op: "find", Path: dir, Err: err}
	}
	return paths, nil
}

// scan returns the attached loop devices, in device order, whose backing file
// (without the " (deleted)" mark) match accepts.
func scan(match func(backing string) bool) ([]string, error) {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	type dev struct {
		n    int
		path string
	}
	var found []dev
	for _, e := range entries {
		num, ok := strings.CutPrefix(e.Name(), "loop")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		b, err := readBackingFile(e.Name())
		if err != nil {
			continue // not attached, or detached meanwhile
		}
		if match(b) || match(strings.TrimSuffix(b, " (deleted)")) {
			found = append(found, dev{n, "/dev/" + e.Name()})
		}
	}
	slices.SortFunc(found, func(a, b dev) int { return a.n - b.n })
	paths := make([]string, len(found))
	for i, f := range found {
		paths[i] = f.path
	}
	return paths, nil
}

// readBackingFile returns the backing file of the loop device name (loopN);
// the sysfs file exists only while the device is attached.
func readBackingFile(name string) (string, error) {
	b, err := os.ReadFile("/sys/block/" + name + "/loop/backing_file")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// SetAutoClear sets or clears LO_FLAGS_AUTOCLEAR of the attached device at
// devicePath: with it on, the kernel detaches the device when its last user
// closes it.
func SetAutoClear(devicePath string, on bool) error {
	fd, err := unix.Open(devicePath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "set autoclear", Device: devicePath, Err: err}
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return &Error{Op: "set autoclear", Device: devicePath, Err: fmt.Errorf("LOOP_GET_STATUS64: %w", err)}
	}
	if on {
		info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	} else {
		info.Flags &^= unix.LO_FLAGS_AUTOCLEAR
	}
	if err := unix.IoctlLoopSetStatus64(fd, info); err != nil {
		return &Error{Op: "set autoclear", Device: devicePath, Err: fmt.Errorf("LOOP_SET_STATUS64: %w", err)}
	}
	return nil
}

// Resize makes the attached device at devicePath see its backing file anew:
// with sizeLimit > 0 its size becomes sizeLimit (LOOP_SET_STATUS64), else
// the size of the backing file (LOOP_SET_CAPACITY).
func Resize(devicePath string, sizeLimit int64) error {
	fd, err := unix.Open(devicePath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "resize", Device: devicePath, Err: err}
	}
	defer unix.Close(fd)
	if sizeLimit > 0 {
		info, err := unix.IoctlLoopGetStatus64(fd)
		if err != nil {
			return &Error{Op: "resize", Device: devicePath, Err: fmt.Errorf("LOOP_GET_STATUS64: %w", err)}
		}
		info.Sizelimit = uint64(sizeLimit)
		if err := unix.IoctlLoopSetStatus64(fd, info); err != nil {
			return &Error{Op: "resize", Device: devicePath, Err: fmt.Errorf("LOOP_SET_STATUS64: %w", err)}
		}
		return nil
	}
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return &Error{Op: "resize", Device: devicePath, Err: fmt.Errorf("LOOP_SET_CAPACITY: %w", err)}
	}
	return nil
}

// Backing reports the device (st_dev) and inode numbers of the file bound
// to the attached device at devicePath, as the kernel recorded them.
func Backing(devicePath string) (dev, ino uint64, err error) {
	f, err := os.Open(devicePath)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return 0, 0, err
	}
	return info.Device, info.Inode, nil
}
