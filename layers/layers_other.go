//go:build !linux

package layers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

func unsupported(op string) error {
	return &Error{Op: op, Err: fmt.Errorf("mounting layers on %s: %w", runtime.GOOS, errors.ErrUnsupported)}
}

// MountLCOWLayers returns an error matching errors.ErrUnsupported: layer stacks are
// mounted with Linux's loop devices and overlayfs.
func MountLCOWLayers(ctx context.Context, containerID string, layers *LCOWLayers, guestRoot string, vm *UtilityVM, opts ...Option) (_, _ string, _ ResourceCloser, err error) {
	return "", "", nil, unsupported("mount LCOW layers")
}

// MountWCOWLayers returns an error matching errors.ErrUnsupported.
func MountWCOWLayers(ctx context.Context, containerID string, layerFolders []string, volumeMountPath string, vm *UtilityVM, opts ...Option) (_ string, _ ResourceCloser, err error) {
	return "", nil, unsupported("mount WCOW layers")
}

// MountSandboxVolume returns an error matching errors.ErrUnsupported.
func MountSandboxVolume(ctx context.Context, hostPath, volumeName string) (err error) {
	return unsupported("mount sandbox volume")
}

// RemoveSandboxMountPoint returns an error matching errors.ErrUnsupported.
func RemoveSandboxMountPoint(ctx context.Context, hostPath string) error {
	return unsupported("remove sandbox mount point")
}

// UnmountAll returns an error matching errors.ErrUnsupported.
func UnmountAll(ctx context.Context, root string, lazy bool) (*Unmounted, error) {
	return nil, unsupported("unmount")
}
