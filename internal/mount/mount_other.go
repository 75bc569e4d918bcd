//go:build !linux

package mount

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

func unsupported(op, target string) error {
	return &Error{Op: op, Target: target, Err: fmt.Errorf("mounts on %s: %w", runtime.GOOS, errors.ErrUnsupported)}
}

// MountOverlay returns an error matching errors.ErrUnsupported: overlayfs is Linux's.
func MountOverlay(target string, o Overlay) error {
	if err := o.validate(target); err != nil {
		return err
	}
	return unsupported("mount overlay", target)
}

// MountExt4 returns an error matching errors.ErrUnsupported.
func MountExt4(device, target string, readOnly bool) error {
	return unsupported("mount ext4", target)
}

// Bind returns an error matching errors.ErrUnsupported.
func Bind(source, target string) error { return unsupported("bind mount", target) }

// Unmount returns an error matching errors.ErrUnsupported.
func Unmount(target string) error { return unsupported("unmount", target) }

// UnmountAll returns an error matching errors.ErrUnsupported.
func UnmountAll(dir string, detach bool) ([]mountinfo.Mount, error) {
	return nil, unsupported("unmount", dir)
}
