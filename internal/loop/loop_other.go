//go:build !linux

package loop

import "runtime"

// Device is an attached loop device. Loop devices exist only on Linux.
type Device struct{}

// Attach returns an error wrapping errors.ErrUnsupported: loop devices exist
// only on Linux.
func Attach(path string, opts Options) (*Device, error) {
	return nil, &Error{Op: "attach", Path: path, Err: unsupported("loop devices on " + runtime.GOOS)}
}

// Find returns an error wrapping errors.ErrUnsupported.
func Find(backingFile string) ([]string, error) {
	return nil, &Error{Op: "find", Path: backingFile, Err: unsupported("loop devices on " + runtime.GOOS)}
}

// FindUnder returns an error wrapping errors.ErrUnsupported.
func FindUnder(dir string) ([]string, error) {
	return nil, &Error{Op: "find", Path: dir, Err: unsupported("loop devices on " + runtime.GOOS)}
}

// Path returns "".
func (d *Device) Path() string { return "" }

// Detach returns nil: there is nothing attached.
func (d *Device) Detach() error { return nil }

// Release returns nil: there is nothing attached.
func (d *Device) Release() error { return nil }

// Close returns nil: there is nothing attached.
func (d *Device) Close() error { return nil }

// DetachPath returns an error wrapping errors.ErrUnsupported.
func DetachPath(devicePath string) error {
	return &Error{Op: "detach", Device: devicePath, Err: unsupported("loop devices on " + runtime.GOOS)}
}

// SetAutoClear returns an error wrapping errors.ErrUnsupported.
func SetAutoClear(devicePath string, on bool) error {
	return &Error{Op: "set autoclear", Device: devicePath, Err: unsupported("loop devices on " + runtime.GOOS)}
}

// Resize returns an error wrapping errors.ErrUnsupported.
func Resize(devicePath string, sizeLimit int64) error {
	return &Error{Op: "resize", Device: devicePath, Err: unsupported("loop devices on " + runtime.GOOS)}
}

// Backing returns an error wrapping errors.ErrUnsupported.
func Backing(devicePath string) (dev, ino uint64, err error) {
	return 0, 0, &Error{Op: "backing", Device: devicePath, Err: unsupported("loop devices on " + runtime.GOOS)}
}
