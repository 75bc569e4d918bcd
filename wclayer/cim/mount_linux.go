package cim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/cimview"
	"github.com/hostcompute/hostcompute/internal/fusefs"
)

// paramContainerID is the fusefs record parameter naming the container.
const paramContainerID = "containerID"

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
	if rec, err := fusefs.Get(id); err == nil {
		if sameFile(rec.Source, abs) {
			return rec.Mountpoint, nil
		}
		return fail(fmt.Errorf("%w (%s)", ErrMountedOther, rec.Source))
	}
	// A mount of this container whose helper died (a crash) is cleaned first,
	// so that its ID and mount point can be used again.
	if _, err := fusefs.Cleanup(ctx); err != nil {
		return fail(err)
	}
	mp := mountPoint(containerID)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fail(err)
	}
	rec, err := fusefs.Mount(ctx, fusefs.Request{
		ID:         id,
		Kind:       cimview.Kind,
		Source:     abs,
		Mountpoint: mp,
		ReadOnly:   true,
		Params:     map[string]string{paramContainerID: containerID},
	})
	if err != nil {
		os.Remove(mp)
		return fail(err)
	}
	return rec.Mountpoint, nil
}

// UnmountCimLayer unmounts the CIM at cimPath mounted for containerID. It fails
// with ErrNotMounted when that CIM is not mounted for the container, and with
// fusefs.ErrBusy (mount kept) while files in it are open.
func UnmountCimLayer(ctx context.Context, cimPath, containerID string) error {
	fail := func(err error) error {
		return &MountError{Op: "unmount", CimPath: cimPath, ContainerID: containerID, Err: err}
	}
	rec, err := fusefs.Get(mountID(containerID))
	if err != nil {
		if errors.Is(err, fusefs.ErrNotFound) {
			return fail(ErrNotMounted)
		}
		return fail(err)
	}
	if abs, err := filepath.Abs(cimPath); err != nil || !sameFile(rec.Source, abs) {
		return fail(fmt.Errorf("%w: the container has %s mounted", ErrNotMounted, rec.Source))
	}
	if err := fusefs.Unmount(ctx, rec.ID); err != nil {
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
	rec, err := fusefs.Get(mountID(containerID))
	if err != nil {
		if errors.Is(err, fusefs.ErrNotFound) {
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
	if rec, err := fusefs.Get(id); err == nil {
		err := fusefs.Unmount(ctx, id)
		if errors.Is(err, fusefs.ErrBusy) {
			// Detach it now; the helper exits when the last user goes.
			if derr := detach(rec.Mountpoint); derr != nil {
				return fail(errors.Join(err, derr))
			}
			err = nil
		}
		if err != nil && !errors.Is(err, fusefs.ErrNotFound) {
			return fail(err)
		}
	}
	// Dead helpers' records and mounts, this container's among them.
	if _, err := fusefs.Cleanup(ctx); err != nil {
		return fail(err)
	}
	if err := os.Remove(mountPoint(containerID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	return nil
}

func detach(mp string) error {
	err := unix.Unmount(mp, unix.MNT_DETACH)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // not mounted any more
	}
	return err
}
