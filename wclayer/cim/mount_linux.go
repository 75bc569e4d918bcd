package cim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hostcompute/hostcompute/host"
)

// MountCimLayer mounts the CIM at cimPath read-only for containerID and returns
// the mount point (see DefaultMountDir; hcsshim returns the volume path). The
// mount outlives the calling process; UnmountCimLayer or CleanupContainerMounts
// ends it. Mounting the same CIM again for the same container returns the
// existing mount; another CIM gives ErrMountedOther. hcsshim's
// CimMountFlagCacheFiles has its counterpart in the kernel's page cache, which
// the mount keeps (see package internal/cimview).
func MountCimLayer(ctx context.Context, cimPath, containerID string) (string, error) {
	fail := func(err error) (string, error) {
		return "", &MountError{Op: "mount", CimPath: cimPath, ContainerID: containerID, Err: err}
	}
	abs, err := filepath.Abs(cimPath)
	if err != nil {
		return fail(err)
	}
	id := mountID(containerID)
	if rec, err := host.GetView(id); err == nil {
		if sameFile(rec.Source, abs) {
			return rec.Mountpoint, nil
		}
		return fail(fmt.Errorf("%w (%s)", ErrMountedOther, rec.Source))
	}
	// A mount of this container whose helper died (a crash) is cleaned first,
	// so that its ID and mount point can be used again.
	if _, err := host.CleanupViews(ctx); err != nil {
		return fail(err)
	}
	mp := mountPoint(containerID)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fail(err)
	}
	rec, err := host.MountCIM(ctx, abs, mp, id, containerID)
	if err != nil {
		os.Remove(mp)
		return fail(err)
	}
	return rec.Mountpoint, nil
}

// UnmountCimLayer unmounts the CIM at cimPath mounted for containerID. It fails
// with ErrNotMounted when that CIM is not mounted for the container, and with
// host.ErrViewBusy (mount kept) while files in it are open.
func UnmountCimLayer(ctx context.Context, cimPath, containerID string) error {
	fail := func(err error) error {
		return &MountError{Op: "unmount", CimPath: cimPath, ContainerID: containerID, Err: err}
	}
	rec, err := host.GetView(mountID(containerID))
	if err != nil {
		if errors.Is(err, host.ErrViewNotFound) {
			return fail(ErrNotMounted)
		}
		return fail(err)
	}
	if abs, err := filepath.Abs(cimPath); err != nil || !sameFile(rec.Source, abs) {
		return fail(fmt.Errorf("%w: the container has %s mounted", ErrNotMounted, rec.Source))
	}
	if err := host.UnmountView(ctx, rec.ID); err != nil {
		return fail(err)
	}
	if err := os.Remove(rec.Mountpoint); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	return nil
}

// GetCimMountPath returns where the CIM at cimPath is mounted for
// containerID, or ErrNotMounted.
func GetCimMountPath(cimPath, containerID string) (string, error) {
	fail := func(err error) (string, error) {
		return "", &MountError{Op: "get mount path", CimPath: cimPath, ContainerID: containerID, Err: err}
	}
	rec, err := host.GetView(mountID(containerID))
	if err != nil {
		if errors.Is(err, host.ErrViewNotFound) {
			return fail(ErrNotMounted)
		}
		return fail(err)
	}
	if abs, err := filepath.Abs(cimPath); err != nil || !sameFile(rec.Source, abs) {
		return fail(fmt.Errorf("%w: the container has %s mounted", ErrNotMounted, rec.Source))
	}
	return rec.Mountpoint, nil
}

// cleanupTimeout bounds CleanupContainerMounts, whose signature has no context.
const cleanupTimeout = time.Minute

// CleanupContainerMounts removes whatever CIM mount containerID has, live or
// left by a crash: a live mount is unmounted (lazily if it is busy, since the
// container is going away), a dead one (its helper killed) is detached, and
// its state record and mount point are removed. A container without mounts
// is not an error.
func CleanupContainerMounts(containerID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	fail := func(err error) error {
		return &MountError{Op: "cleanup", ContainerID: containerID, Err: err}
	}
	id := mountID(containerID)
	if rec, err := host.GetView(id); err == nil {
		err := host.UnmountView(ctx, id)
		if errors.Is(err, host.ErrViewBusy) {
			// Detach it now; the helper exits when the last user goes.
			if derr := detach(rec.Mountpoint); derr != nil {
				return fail(errors.Join(err, derr))
			}
			err = nil
		}
		if err != nil && !errors.Is(err, host.ErrViewNotFound) {
			return fail(err)
		}
	}
	// Dead helpers' records and mounts, this container's among them.
	if _, err := host.CleanupViews(ctx); err != nil {
		return fail(err)
	}
	if err := os.Remove(mountPoint(containerID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	return nil
}

func detach(mp string) error { return host.UnmountDetach(mp) }
