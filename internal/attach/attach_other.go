//go:build !linux

package attach

import (
	"context"
	"errors"
	"fmt"
)

var errNotLinux = fmt.Errorf("attach: block devices need Linux loop devices: %w", errors.ErrUnsupported)

// Attach fails with an error wrapping errors.ErrUnsupported.
func Attach(ctx context.Context, path string, opts Options) (*Attachment, error) {
	return nil, &Error{Op: "attach", Path: path, Err: errNotLinux}
}

// Detach fails with an error wrapping errors.ErrUnsupported.
func Detach(ctx context.Context, deviceOrDisk string) error {
	return &Error{Op: "detach", Path: deviceOrDisk, Err: errNotLinux}
}

// Get fails with an error wrapping errors.ErrUnsupported.
func Get(deviceOrDisk string) (*Attachment, error) {
	return nil, &Error{Op: "get", Path: deviceOrDisk, Err: errNotLinux}
}

// List returns no attachments.
func List() ([]Attachment, error) { return nil, nil }

// MountPoints fails with an error wrapping errors.ErrUnsupported.
func MountPoints(a *Attachment) ([]string, error) { return nil, errNotLinux }

// Cleanup has nothing to do.
func Cleanup(ctx context.Context) error { return nil }

// Grow fails with an error wrapping errors.ErrUnsupported.
func Grow(ctx context.Context, deviceOrDisk string, size int64) (*Attachment, error) {
	return nil, &Error{Op: "grow", Path: deviceOrDisk, Err: errNotLinux}
}
