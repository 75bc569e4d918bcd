package host

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/state"
)

// Attachment describes an attached disk, as its record holds it.
type Attachment = attach.Attachment

// AttachOptions controls AttachDisk.
type AttachOptions = attach.Options

// DiskFormat is the container format of a disk file.
type DiskFormat = attach.Format

// DiskInfo is what DetectDisk learns about a disk file.
type DiskInfo = attach.Info

// Disk formats, as DetectDisk reports them.
const (
	FormatRaw              = attach.FormatRaw
	FormatVHDFixed         = attach.FormatVHDFixed
	FormatVHDDynamic       = attach.FormatVHDDynamic
	FormatVHDDifferencing  = attach.FormatVHDDifferencing
	FormatVHDXFixed        = attach.FormatVHDXFixed
	FormatVHDXDynamic      = attach.FormatVHDXDynamic
	FormatVHDXDifferencing = attach.FormatVHDXDifferencing
)

// Errors of the disk functions.
var (
	// ErrDiskAttached: the disk is attached already (matches fs.ErrExist).
	ErrDiskAttached = attach.ErrAttached
	// ErrDiskNotAttached: no attachment of that device or disk (matches
	// fs.ErrNotExist).
	ErrDiskNotAttached = attach.ErrNotAttached
	// ErrDiskBusy: the device is mounted or held, or an attach of it is in
	// progress.
	ErrDiskBusy = attach.ErrBusy
	// ErrCannotGrow: the disk's format cannot grow (matches
	// errors.ErrUnsupported).
	ErrCannotGrow = attach.ErrCannotGrow
	// ErrUnknownFilesystem: a device holds neither ext4 nor NTFS.
	ErrUnknownFilesystem = diskfs.ErrUnknownFilesystem
)

// AttachDisk makes the disk file at path a block device (/dev/loopN) that
// outlives the calling process; DetachDisk ends it. It is the plan
// Plan{DiskStep(path, …)} applied on its own and kept.
func AttachDisk(ctx context.Context, path string, opts AttachOptions) (*Attachment, error) {
	return attach.Attach(ctx, path, opts)
}

// DetachDisk ends the attachment of a device or disk file. A device still
// mounted gives an error matching ErrDiskBusy and stays attached.
func DetachDisk(ctx context.Context, deviceOrDisk string) error {
	return attach.Detach(ctx, deviceOrDisk)
}

// GetDisk returns the attachment of a device or disk file, or an error
// matching ErrDiskNotAttached.
func GetDisk(deviceOrDisk string) (*Attachment, error) { return attach.Get(deviceOrDisk) }

// ListDisks returns the complete attachments, sorted by device.
func ListDisks() ([]Attachment, error) { return attach.List() }

// DiskMountPoints returns where the device of a is mounted.
func DiskMountPoints(a *Attachment) ([]string, error) { return attach.MountPoints(a) }

// DetectDisk reports the format and virtual size of the disk file at path.
func DetectDisk(path string) (*DiskInfo, error) { return attach.Detect(path) }

// CleanupDisks removes what crashed callers left of attachments and their
// FUSE helpers.
func CleanupDisks(ctx context.Context) error { return attach.Cleanup(ctx) }

// GrowDisk grows an attached disk (by device or file) and its device to size
// bytes, even while mounted; the file system is not touched.
func GrowDisk(ctx context.Context, deviceOrDisk string, size int64) (*Attachment, error) {
	return attach.Grow(ctx, deviceOrDisk, size)
}

// GrowDiskFile grows the virtual size of a disk file that is not attached
// and reports whether it changed.
func GrowDiskFile(path string, size int64) (bool, error) { return attach.GrowFile(path, size) }

// Filesystem names a file system of a disk.
type Filesystem = diskfs.Filesystem

// File systems.
const (
	Ext4 = diskfs.Ext4
	NTFS = diskfs.NTFS
	None = diskfs.None
)

// FormatOptions controls FormatDevice.
type FormatOptions = diskfs.FormatOptions

// FormatDevice makes a new file system on an attached device.
func FormatDevice(ctx context.Context, device string, opts FormatOptions) error {
	return diskfs.Format(ctx, device, opts)
}

// ProbeDevice reports which file system a device holds.
func ProbeDevice(device string) (Filesystem, error) { return diskfs.Probe(device) }

// DiskMountDir returns where MountDisk mounts disks, one directory per
// attachment: mounts/ under the state root.
func DiskMountDir() string { return state.Dir(state.Mounts) }

// MountDisk makes the file system of the disk file usable at a path: a disk
// already mounted somewhere (whoever mounted it) gives that mount and an
// empty undo; otherwise the disk is attached if it is not (TypeDisk) and its
// file system mounted at DiskMountDir()/<attachment ID>, and the undo takes
// down what this call made, the attachment included when it made it.
func MountDisk(ctx context.Context, disk string, readOnly bool) (string, *Undo, error) {
	undo := &Undo{}
	a, err := attach.Get(disk)
	switch {
	case err == nil:
		mps, err := attach.MountPoints(a)
		if err != nil {
			return "", nil, err
		}
		if len(mps) > 0 {
			return mps[0], undo, nil
		}
	case errors.Is(err, attach.ErrNotAttached):
		u, err := Apply(ctx, Plan{DiskStep(disk, "disk", readOnly, false)})
		if err != nil {
			return "", nil, err
		}
		undo.Append(u)
		if a, err = attach.Get(disk); err != nil {
			return "", nil, errors.Join(err, undo.Release(context.Background()))
		}
	default:
		return "", nil, err
	}
	mp := filepath.Join(DiskMountDir(), a.ID)
	u, err := Apply(ctx, Plan{MkdirStep(mp), FilesystemMount(mount.TypeAuto, a.Device, mp, readOnly || a.ReadOnly)})
	if err != nil {
		return "", nil, errors.Join(err, undo.Release(context.Background()))
	}
	undo.Append(u)
	return mp, undo, nil
}

// CIMMountDir returns where CIMs mounted for containers get their mount
// points: cim/ under the state root.
func CIMMountDir() string { return state.Dir(state.CIM) }

// FormatDiskFile attaches the new disk file at path for the time of the
// call and makes a file system on it (ext4 unless opts say NTFS), skipping
// the writes of zeros a new disk does not need: a plan of a disk step and a
// format step.
func FormatDiskFile(ctx context.Context, path string, opts FormatOptions) (err error) {
	fsys := opts.Filesystem
	if fsys == None {
		fsys = Ext4
	}
	step := FormatStep("@disk", string(fsys), opts.Label, false)
	if opts.AssumeZeroed {
		step.Options = append(step.Options, "zeroed")
	}
	u, err := Apply(ctx, Plan{DiskStep(path, "disk", false, false), step})
	if err != nil {
		return err
	}
	return u.Release(context.Background())
}
