//go:build !linux

package diskfs

import (
	"context"
	"errors"
	"fmt"
)

var errNotLinux = fmt.Errorf("diskfs: growing file systems needs Linux: %w", errors.ErrUnsupported)

// Grow fails with an error wrapping errors.ErrUnsupported.
func Grow(ctx context.Context, device string, mounted bool) error { return errNotLinux }
