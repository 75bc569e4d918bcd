package computestorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/basedisk"
)

// DefaultScratchSizeGB is the size of the scratch disks the Host Compute
// Service makes when no size is given (hcsshim's DefaultScratchSizeGB).
const DefaultScratchSizeGB = 20

// ScratchOptions describes the base and differencing disks that
// SetupContainerBaseLayerWithOptions and SetupUtilityVMBaseLayerWithOptions
// make.
type ScratchOptions struct {
	// Size is the virtual size in bytes, a multiple of 1 MiB; 0 means
	// DefaultScratchSizeGB GiB. Disks are sparse: the size costs nothing until
	// written, and ExpandScratchSize (package wclayer) grows a disk later.
	Size int64
	// Filesystem on the base disk: ext4 by default for container scratch,
	// NTFS by default for a utility VM.
	Filesystem Filesystem
	// Label is the volume label; empty means none.
	Label string
}

// SetupContainerBaseLayer is a helper to set up a container's scratch. It
// creates the base disk baseVhdPath, a dynamic VHDX of sizeInGB GiB with 1 MiB
// blocks, formats it (ext4 over the whole disk; Windows makes a GPT disk with
// an NTFS partition), sets up the layer with SetupBaseOSLayer (Hives/ and
// Layout), and creates diffVhdPath, a differencing VHDX with 1 MiB blocks
// whose parent is the base. Callers name them as hcsshim does:
// <layer>/blank-base.vhdx and <layer>/blank.vhdx (ContainerScratchTemplateBase
// and ContainerScratchTemplate). Existing Hives/, Layout and disks are
// replaced. On failure both disks are removed. Do not write the base once
// the child exists: the child pins its DataWriteGuid.
func SetupContainerBaseLayer(ctx context.Context, layerPath, baseVhdPath, diffVhdPath string, sizeInGB uint64) (err error) {
	if sizeInGB == 0 || sizeInGB > 64<<10 {
		return fmt.Errorf("computestorage: setting up container base layer %s: size %d GB out of range", layerPath, sizeInGB)
	}
	return SetupContainerBaseLayerWithOptions(ctx, layerPath, baseVhdPath, diffVhdPath, ScratchOptions{Size: int64(sizeInGB) << 30})
}

// SetupContainerBaseLayerWithOptions is SetupContainerBaseLayer with a size
// in bytes and a choice of file system.
func SetupContainerBaseLayerWithOptions(ctx context.Context, layerPath, baseVhdPath, diffVhdPath string, opts ScratchOptions) (err error) {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: setting up container base layer %s: %w", layerPath, err)
	}
	if opts.Filesystem == "" {
		opts.Filesystem = FilesystemExt4
	}
	// SetupBaseOSLayer makes these again and refuses to replace them.
	if err := os.RemoveAll(filepath.Join(layerPath, "Hives")); err != nil {
		return fail(err)
	}
	for _, name := range []string{LayoutFile, "layout"} {
		if err := os.Remove(filepath.Join(layerPath, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
	}
	if err := makeBaseAndDiff(ctx, baseVhdPath, diffVhdPath, opts, func() error {
		return SetupBaseOSLayer(ctx, layerPath, nil, OsLayerOptions{Type: OsLayerTypeContainer})
	}); err != nil {
		return fail(err)
	}
	return nil
}

// SetupUtilityVMBaseLayer is a helper to set up a utility VM's scratch
// space. It creates baseVhdPath, a dynamic VHDX of sizeInGB GiB with 1 MiB
// blocks, formats it with NTFS, and creates diffVhdPath, a differencing VHDX
// with 1 MiB blocks over it. Callers name them as hcsshim does:
// <layer>/UtilityVM/SystemTemplateBase.vhdx and SystemTemplate.vhdx
// (UtilityVMTemplateBase and UtilityVMTemplate).
//
// Limit: on Windows, SetupBaseOSLayer then writes the utility VM's system
// volume into the base, with registry and boot configuration (BCD) edits
// that cannot be done on Linux (see ErrWindowsOnly). The base made here
// holds an empty volume; uvmPath is only checked to exist. After making the
// disks it returns an error matching ErrWindowsOnly (and
// errors.ErrUnsupported) that says so: the disks stay, and cannot boot a
// utility VM. On other failures both disks are removed.
func SetupUtilityVMBaseLayer(ctx context.Context, uvmPath, baseVhdPath, diffVhdPath string, sizeInGB uint64) (err error) {
	if sizeInGB == 0 || sizeInGB > 64<<10 {
		return fmt.Errorf("computestorage: setting up utility VM base layer %s: size %d GB out of range", uvmPath, sizeInGB)
	}
	return SetupUtilityVMBaseLayerWithOptions(ctx, uvmPath, baseVhdPath, diffVhdPath, ScratchOptions{Size: int64(sizeInGB) << 30})
}

// SetupUtilityVMBaseLayerWithOptions is SetupUtilityVMBaseLayer with a size
// in bytes and a choice of file system; it too ends with ErrWindowsOnly once
// the disks are made.
func SetupUtilityVMBaseLayerWithOptions(ctx context.Context, uvmPath, baseVhdPath, diffVhdPath string, opts ScratchOptions) (err error) {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: setting up utility VM base layer %s: %w", uvmPath, err)
	}
	if fi, err := os.Stat(uvmPath); err != nil {
		return fail(err)
	} else if !fi.IsDir() {
		return fail(fmt.Errorf("%s is not a directory", uvmPath))
	}
	if opts.Filesystem == "" {
		opts.Filesystem = FilesystemNTFS
	}
	if err := makeBaseAndDiff(ctx, baseVhdPath, diffVhdPath, opts, nil); err != nil {
		return fail(err)
	}
	return fail(fmt.Errorf("template disks made with an empty volume; the system volume is not written: %w", ErrWindowsOnly))
}

// makeBaseAndDiff replaces base and diff with a new formatted dynamic VHDX
// and a differencing child of it (see basedisk.MakeBaseAndDiff).
func makeBaseAndDiff(ctx context.Context, base, diff string, opts ScratchOptions, between func() error) error {
	if opts.Size == 0 {
		opts.Size = DefaultScratchSizeGB << 30
	}
	fsys := host.Ext4
	switch opts.Filesystem {
	case FilesystemExt4:
	case FilesystemNTFS:
		fsys = host.NTFS
	default:
		return fmt.Errorf("unknown file system %q (want ext4 or ntfs)", opts.Filesystem)
	}
	o := basedisk.Options{Size: opts.Size, Format: func(ctx context.Context, path string) error {
		return host.FormatDiskFile(ctx, path, host.FormatOptions{Filesystem: fsys, Label: opts.Label, AssumeZeroed: true})
	}}
	return basedisk.MakeBaseAndDiff(ctx, base, diff, o, between)
}
