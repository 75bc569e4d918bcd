//go:build !linux

package cim

import "context"

// MountCimLayer needs Linux FUSE; elsewhere it fails with errors.ErrUnsupported.
func MountCimLayer(ctx context.Context, cimPath, containerID string) (string, error) {
	return "", &MountError{Op: "mount", CimPath: cimPath, ContainerID: containerID, Err: errUnsupported}
}

// UnmountCimLayer needs Linux FUSE; elsewhere it fails with errors.ErrUnsupported.
func UnmountCimLayer(ctx context.Context, cimPath, containerID string) error {
	return &MountError{Op: "unmount", CimPath: cimPath, ContainerID: containerID, Err: errUnsupported}
}

// GetCimMountPath needs Linux FUSE; elsewhere it fails with errors.ErrUnsupported.
func GetCimMountPath(cimPath, containerID string) (string, error) {
	return "", &MountError{Op: "get mount path", CimPath: cimPath, ContainerID: containerID, Err: errUnsupported}
}

// CleanupContainerMounts has nothing to clean where CIMs cannot be mounted.
func CleanupContainerMounts(containerID string) error { return nil }
