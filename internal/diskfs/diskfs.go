// Package diskfs puts file systems on attached disks: it formats a block
// device with ext4 (mkfs.ext4) or NTFS (mkntfs), tells which of the two a
// device holds, mounts it, and grows it to the size of its device
// (resize2fs, online when mounted; ntfsresize, offline only).
//
// File systems go on the whole device, without a partition table, as the
// scratch disks of Linux utility VMs have them. The tools are e2fsprogs and
// ntfs-3g's; a missing tool gives an error naming it and the Debian package.
package diskfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

// Filesystem names a file system type.
type Filesystem string

// File systems this package makes and grows.
const (
	Ext4 Filesystem = "ext4"
	NTFS Filesystem = "ntfs"
	// None is what Probe reports for a device with neither.
	None Filesystem = ""
)

// Errors, wrapped with the device and the tool's message.
var (
	// ErrUnknownFilesystem means the device holds no file system this
	// package knows (or none at all).
	ErrUnknownFilesystem = errors.New("diskfs: no ext4 or NTFS file system")
	// ErrOfflineOnly means the file system cannot be grown while mounted
	// (NTFS). It matches errors.ErrUnsupported.
	ErrOfflineOnly = fmt.Errorf("diskfs: file system grows only when unmounted: %w", errors.ErrUnsupported)
	// ErrTool means an external tool failed or is missing.
	ErrTool = errors.New("diskfs: tool failed")
	// ErrOnlineNotPermitted means the kernel refuses online ext4 growth to
	// this process: it lacks CAP_SYS_RESOURCE (often dropped in
	// containers). It matches fs.ErrPermission.
	ErrOnlineNotPermitted = fmt.Errorf("diskfs: online ext4 growth needs CAP_SYS_RESOURCE: %w", fs.ErrPermission)
)

// FormatOptions controls Format.
type FormatOptions struct {
	// Filesystem is Ext4 (the default when empty) or NTFS.
	Filesystem Filesystem
	// Label is the volume label; empty means none.
	Label string
	// AssumeZeroed tells mkfs.ext4 that the device reads as zeros (a new
	// disk), so that it writes no inode tables or journal blocks of zeros:
	// on dynamic disks those writes would allocate blocks for nothing.
	// Wrong on a used disk, where it leaves old data in inode tables.
	AssumeZeroed bool
}

// Format makes a new file system on device, erasing what it held.
func Format(ctx context.Context, device string, opts FormatOptions) error {
	switch opts.Filesystem {
	case Ext4, None:
		ext := "nodiscard"
		if opts.AssumeZeroed {
			ext += ",assume_storage_prezeroed=1"
		} else {
			// Zero the inode tables now rather than in the kernel's
			// background thread after the first mount.
			ext += ",lazy_itable_init=0,lazy_journal_init=0"
		}
		args := []string{"-q", "-F", "-E", ext}
		if opts.Label != "" {
			args = append(args, "-L", opts.Label)
		}
		return runTool(ctx, "e2fsprogs", "mkfs.ext4", append(args, device)...)
	case NTFS:
		// -F: the whole device, not a partition; -Q: no zeroing or bad
		// sector scan.
		args := []string{"-F", "-Q", "-q"}
		if opts.Label != "" {
			args = append(args, "-L", opts.Label)
		}
		return runTool(ctx, "ntfs-3g", "mkntfs", append(args, device)...)
	}
	return fmt.Errorf("diskfs: formatting %s: unknown file system %q (want ext4 or ntfs)", device, opts.Filesystem)
}

// Probe reports which file system device holds by reading its superblock:
// Ext4 for any ext2/3/4 superblock, NTFS, or None.
func Probe(device string) (Filesystem, error) {
	f, err := os.Open(device)
	if err != nil {
		return None, err
	}
	defer f.Close()
	b := make([]byte, 2048)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return None, fmt.Errorf("diskfs: reading the superblock of %s: %w", device, err)
	}
	return probe(b), nil
}

// probe tells the file system from the first 2 KiB of a device.
func probe(b []byte) Filesystem {
	if len(b) >= 11 && bytes.Equal(b[3:11], []byte("NTFS    ")) {
		return NTFS
	}
	// ext2/3/4: the superblock at 1024, magic 0xEF53 at byte 56 of it.
	if len(b) >= 1024+58 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53 {
		return Ext4
	}
	return None
}

// runTool runs a tool and wraps its failure with its output.
func runTool(ctx context.Context, pkg, name string, args ...string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%w: %s not found (Debian package %s): %w", ErrTool, name, pkg, err)
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return fmt.Errorf("%w: %s %s: %w: %s", ErrTool, name, strings.Join(args, " "), err, msg)
	}
	return nil
}
