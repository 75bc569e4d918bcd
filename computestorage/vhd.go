package computestorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"

	"github.com/hostcompute/hostcompute/host"
)

// VirtualDisk is an opened virtual disk: what the windows.Handle parameters of
// hcsshim's disk functions are here (a handle from OpenVirtualDisk or, on
// Windows Server 2019, CreateFile). It names a disk file of any format (raw,
// VHD or VHDX of any type) and remembers what was attached and mounted
// through it, which Close undoes, as closing a virtual disk handle detaches
// the disk on Windows.
//
// Unlike a Windows handle, an attachment or mount outlives a process that
// exits without Close: find it with hcs vhd detach (or internal/attach's
// List), or use it again through a new VirtualDisk (GetLayerVhdMountPath
// finds the mount).
//
// A VirtualDisk does not keep the file open: while the disk is attached its
// block device (and the raw view's helper, for formats that need one) is
// what reads and writes it. Do not write the file through package vhd while
// it is attached.
//
// Its methods may be called from several goroutines.
type VirtualDisk struct {
	path     string
	readOnly bool

	mu       sync.Mutex // guards the fields below
	attached *host.Attachment
	undo     *host.Undo // what GetLayerVhdMountPath made through this handle
	closed   bool
}

// OpenVirtualDiskOptions controls OpenVirtualDisk.
type OpenVirtualDiskOptions struct {
	// ReadOnly attaches and mounts the disk read-only; formatting fails.
	ReadOnly bool
}

// OpenVirtualDisk opens the disk at path, checking its format (see
// host.DetectDisk: damaged VHD and VHDX structures are refused).
func OpenVirtualDisk(path string, opts OpenVirtualDiskOptions) (*VirtualDisk, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := host.DetectDisk(abs); err != nil {
		return nil, fmt.Errorf("computestorage: opening virtual disk %s: %w", abs, err)
	}
	return &VirtualDisk{path: abs, readOnly: opts.ReadOnly}, nil
}

// Path returns the absolute path of the disk file.
func (d *VirtualDisk) Path() string { return d.path }

// Close unmounts what GetLayerVhdMountPath mounted through d and detaches
// what d attached. Attachments and mounts made by others stay. A mount still
// in use gives an error, and the disk then stays attached; Close may be
// called again later. Closing twice is not an error.
func (d *VirtualDisk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.undo != nil {
		if err := d.undo.Release(context.Background()); err != nil {
			return fmt.Errorf("computestorage: closing virtual disk %s: %w", d.path, err)
		}
		d.undo = nil
	}
	if d.attached != nil {
		if err := host.DetachDisk(context.Background(), d.attached.Device); err != nil && !errors.Is(err, host.ErrDiskNotAttached) {
			return fmt.Errorf("computestorage: closing virtual disk %s: %w", d.path, err)
		}
		d.attached = nil
	}
	d.closed = true
	return nil
}

var errClosed = errors.New("computestorage: virtual disk closed")

// device returns the attachment of the disk, attaching it through d if it
// is not attached; temporary says Attach happened here and now.
func (d *VirtualDisk) device(ctx context.Context) (a *host.Attachment, temporary bool, err error) {
	if d.closed {
		return nil, false, errClosed
	}
	if a, err := host.GetDisk(d.path); err == nil {
		return a, false, nil
	} else if !errors.Is(err, host.ErrDiskNotAttached) {
		return nil, false, err
	}
	a, err = host.AttachDisk(ctx, d.path, host.AttachOptions{ReadOnly: d.readOnly})
	if err != nil {
		return nil, false, err
	}
	return a, true, nil
}

// Filesystem names the file system FormatVirtualDisk makes.
type Filesystem string

// File systems for writable layer disks.
const (
	// FilesystemExt4 is the default: Linux containers use it directly.
	FilesystemExt4 Filesystem = "ext4"
	// FilesystemNTFS is made with mkntfs, for disks meant for Windows.
	FilesystemNTFS Filesystem = "ntfs"
)

// FormatOptions controls FormatVirtualDisk.
type FormatOptions struct {
	// Filesystem is FilesystemExt4 (the default when empty) or FilesystemNTFS.
	Filesystem Filesystem
	// Label is the volume label; empty means none.
	Label string
	// NewDisk says the disk has never been written (it reads as zeros), so
	// that mkfs.ext4 skips writing zeros that would only allocate blocks of
	// a dynamic disk. Do not set it for a disk that held data.
	NewDisk bool
}

// FormatWritableLayerVhd formats a virtual disk for use as a writable
// container layer: ext4 over the whole disk, without a partition table (as
// the scratch disks of Linux utility VMs are; Windows makes a GPT disk with
// an NTFS partition instead). If the disk is not attached it is attached for
// the time of the call. A disk that is mounted is refused.
//
// Use FormatVirtualDisk to choose NTFS.
func FormatWritableLayerVhd(ctx context.Context, vhdHandle *VirtualDisk) (err error) {
	return FormatVirtualDisk(ctx, vhdHandle, FormatOptions{})
}

// FormatVirtualDisk is FormatWritableLayerVhd with a choice of file system.
func FormatVirtualDisk(ctx context.Context, vhdHandle *VirtualDisk, opts FormatOptions) error {
	d := vhdHandle
	d.mu.Lock()
	defer d.mu.Unlock()
	fail := func(err error) error {
		return fmt.Errorf("computestorage: formatting %s: %w", d.path, err)
	}
	if d.readOnly {
		return fail(fmt.Errorf("opened read-only: %w", fs.ErrPermission))
	}
	a, temporary, err := d.device(ctx)
	if err != nil {
		return fail(err)
	}
	if temporary {
		defer func() {
			if derr := host.DetachDisk(context.Background(), a.Device); derr != nil && err == nil {
				err = fail(derr)
			}
		}()
	} else {
		if a.ReadOnly {
			return fail(fmt.Errorf("attached read-only as %s: %w", a.Device, fs.ErrPermission))
		}
		if mps, err := host.DiskMountPoints(a); err != nil {
			return fail(err)
		} else if len(mps) > 0 {
			return fail(fmt.Errorf("%w: %s is mounted at %s", host.ErrDiskBusy, a.Device, mps[0]))
		}
	}
	fsys := host.Ext4
	switch opts.Filesystem {
	case "", FilesystemExt4:
	case FilesystemNTFS:
		fsys = host.NTFS
	default:
		return fail(fmt.Errorf("unknown file system %q (want ext4 or ntfs)", opts.Filesystem))
	}
	if err := host.FormatDevice(ctx, a.Device, host.FormatOptions{Filesystem: fsys, Label: opts.Label, AssumeZeroed: opts.NewDisk}); err != nil {
		return fail(err)
	}
	return nil
}

// DefaultMountDir is where GetLayerVhdMountPath mounts disks, one directory
// per attachment: mounts/ under the state root, which $HOSTCOMPUTE_STATE_DIR
// moves (see host.DiskMountDir).
const DefaultMountDir = "/run/hostcompute/mounts"

// GetLayerVhdMountPath returns the directory where the file system of a
// writable layer's disk is mounted (on Windows, its volume path). A disk
// already mounted somewhere (found in /proc/self/mountinfo, whoever mounted
// it) gives that mount; otherwise the disk is attached if needed and mounted
// at host.DiskMountDir()/<attachment ID>, and Close on the handle undoes
// both.
func GetLayerVhdMountPath(ctx context.Context, vhdHandle *VirtualDisk) (path string, err error) {
	d := vhdHandle
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return "", fmt.Errorf("computestorage: mounting %s: %w", d.path, errClosed)
	}
	mp, undo, err := host.MountDisk(ctx, d.path, d.readOnly)
	if err != nil {
		return "", fmt.Errorf("computestorage: mounting %s: %w", d.path, err)
	}
	if len(undo.Steps()) > 0 {
		if d.undo == nil {
			d.undo = &host.Undo{}
		}
		d.undo.Append(undo)
	}
	return mp, nil
}

// MaybeRunHelper serves a disk's raw view and exits if this process was
// started as the helper of an attached disk; otherwise it returns at once.
// Call it first in main, and in TestMain, of any program that formats or
// mounts VHD or VHDX disks through this package.
func MaybeRunHelper() { host.MaybeRunHelper() }
