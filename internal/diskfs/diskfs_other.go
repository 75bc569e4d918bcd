//go:build !linux

package diskfs

import (
	"context"
	"errors"
	"fmt"
)

var errNotLinux = fmt.Errorf("diskfs: mounting needs Linux: %w", errors.ErrUnsupported)

// Mount fails with an error wrapping errors.ErrUnsupported.
func Mount(ctx context.Context, device, mountpoint string, readOnly bool) error { return errNotLinux }

// Unmount fails with an error wrapping errors.ErrUnsupported.
func Unmount(mountpoint string) error { return errNotLinux }

// Grow fails with an error wrapping errors.ErrUnsupported.
func Grow(ctx context.Context, device string, mounted bool) error { return errNotLinux }

// GrowInPlace fails with an error wrapping errors.ErrUnsupported.
func GrowInPlace(ctx context.Context, device string) error { return errNotLinux }
