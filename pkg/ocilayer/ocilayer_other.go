//go:build !linux

package ocilayer

import (
	"context"
	"fmt"
	"io"
	"runtime"
)

// Apply needs openat2(2) to confine paths under root and is implemented on
// Linux only; elsewhere it returns an error matching ErrUnsupported.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOption) (int64, error) {
	return 0, fmt.Errorf("%w: ocilayer.Apply on %s", ErrUnsupported, runtime.GOOS)
}

// Diff reads an overlayfs upper directory and is implemented on Linux only;
// elsewhere it returns an error matching ErrUnsupported.
func Diff(ctx context.Context, w io.Writer, upper string, opts ...DiffOption) error {
	return fmt.Errorf("%w: ocilayer.Diff on %s", ErrUnsupported, runtime.GOOS)
}

// ApplyNew is implemented on Linux only; elsewhere it returns an error matching
// ErrUnsupported.
func ApplyNew(ctx context.Context, target string, r io.Reader, opts ...ApplyOption) (int64, error) {
	return 0, fmt.Errorf("%w: ocilayer.ApplyNew on %s", ErrUnsupported, runtime.GOOS)
}
