//go:build !linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
)

var errNotLinux = fmt.Errorf("fusefs: FUSE mounts need Linux: %w", errors.ErrUnsupported)

// MaybeRunHelper returns at once: helpers run on Linux only.
func MaybeRunHelper() {}

// Mount fails with an error wrapping errors.ErrUnsupported.
func Mount(ctx context.Context, req Request) (*Record, error) {
	return nil, &Error{Op: "mount", ID: req.ID, Err: errNotLinux}
}

// Get fails with an error wrapping errors.ErrUnsupported.
func Get(id string) (*Record, error) { return nil, &Error{Op: "get", ID: id, Err: errNotLinux} }

// List returns no mounts.
func List() ([]Record, error) { return nil, nil }

// Unmount fails with an error wrapping errors.ErrUnsupported.
func Unmount(ctx context.Context, id string) error {
	return &Error{Op: "unmount", ID: id, Err: errNotLinux}
}

// Cleanup has nothing to do.
func Cleanup(ctx context.Context) ([]string, error) { return nil, nil }

// Dead reports false: there are no FUSE mounts.
func Dead(mountpoint string) bool { return false }

// Serving reports false: there are no FUSE mounts.
func Serving(mountpoint string) bool { return false }
