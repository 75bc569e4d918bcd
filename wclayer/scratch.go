package wclayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
)

// ScratchDisk is the name of a writable layer's disk in its folder.
const ScratchDisk = "sandbox.vhdx"

// ExpandScratchSize expands the size of a layer to at least size bytes: its
// disk grows (rounded up to a whole MiB) and so does the file system on it,
// ext4 or NTFS.
//
// path is the layer folder, whose disk is sandbox.vhdx, or a disk file. The
// disk may be attached and mounted: ext4 then grows online when the kernel
// allows it (the process needs CAP_SYS_RESOURCE); where it cannot (NTFS, or
// no CAP_SYS_RESOURCE) the file system is unmounted, grown and mounted again
// at the same places, which fails with EBUSY and changes nothing while files
// are open on it. A disk that is not attached is attached for the time of
// the call. A disk already as large keeps its size; its file system is still
// grown to fill it, which finishes an expansion that a crash interrupted.
//
// Every scratch disk the project makes grows: raw images, fixed VHDs, dynamic
// VHDX, and a differencing VHDX such as a copy of a base layer's blank.vhdx
// (as containerd makes Windows scratch disks), which grows past its parent
// (the parent is not touched; what lies past its end reads as zeros). A
// differencing VHD gives an error matching errors.ErrUnsupported.
func ExpandScratchSize(ctx context.Context, path string, size uint64) (err error) {
	disk := path
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		disk = filepath.Join(path, ScratchDisk)
	}
	fail := func(err error) error {
		return fmt.Errorf("wclayer: expanding scratch %s: %w", disk, err)
	}
	const mib = 1 << 20
	if size == 0 || size > 1<<46 {
		return fail(fmt.Errorf("size %d out of range", size))
	}
	want := int64((size + mib - 1) / mib * mib)

	a, err := host.GetDisk(disk)
	switch {
	case err == nil:
		if a, err = host.GrowDisk(ctx, a.Device, want); err != nil {
			return fail(err)
		}
	case errors.Is(err, host.ErrDiskNotAttached):
		if _, err := host.GrowDiskFile(disk, want); err != nil {
			return fail(err)
		}
		if a, err = host.AttachDisk(ctx, disk, host.AttachOptions{}); err != nil {
			return fail(err)
		}
		defer func() {
			if derr := host.DetachDisk(context.Background(), a.Device); derr != nil && err == nil {
				err = fail(derr)
			}
		}()
	default:
		return fail(err)
	}
	fsys, err := host.ProbeDevice(a.Device)
	if err != nil {
		return fail(err)
	}
	if fsys == host.None {
		return nil // an unformatted disk: only the disk grows
	}
	if err := host.GrowFilesystem(ctx, a.Device); err != nil {
		return fail(err)
	}
	return nil
}

// MaybeRunHelper serves a disk's raw view and exits if this process was
// started as the helper of an attached disk; otherwise it returns at once.
// Call it first in main, and in TestMain, of any program that expands VHD or
// VHDX scratch disks through this package.
func MaybeRunHelper() { host.MaybeRunHelper() }
