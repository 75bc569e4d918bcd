package wclayer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/basedisk"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// ErrWindowsOnly is returned by ProcessUtilityVMImage for the step Linux
// cannot do: writing a utility VM's system volume, with its registry and boot
// configuration (BCD) edits. It matches errors.ErrUnsupported and is the same
// value as computestorage.ErrWindowsOnly.
var ErrWindowsOnly = basedisk.ErrWindowsOnly

// Sizes of the template disks, as the Host Compute Service makes them.
const (
	BaseScratchTemplateSize = 20 << 30 // blank-base.vhdx
	UtilityVMTemplateSize   = 10 << 30 // UtilityVM/SystemTemplateBase.vhdx
)

// checkFiles reports an error naming path unless path/Files is a folder.
func checkFiles(path string) error {
	files := filepath.Join(path, winlayer.FilesDir)
	st, err := os.Stat(files)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder: %w", files, fs.ErrInvalid)
	}
	return nil
}

// ProcessBaseLayer post-processes a base layer whose files have been
// extracted to path/Files. It makes the container scratch template the way
// computestorage.SetupContainerBaseLayer does: blank-base.vhdx, a dynamic
// 20 GiB VHDX with 1 MiB blocks formatted ext4 (Windows formats NTFS), and
// blank.vhdx, its differencing child, which containers copy as their
// sandbox.vhdx. Existing template disks are replaced. When the layer has no
// Hives/ and no Layout yet and its image holds the registry hives
// (Files/Windows/System32/config), Hives/ is made from them with Layout, as
// computestorage.SetupBaseOSLayer does; a layer that already has Hives/ (from
// its tar) keeps them. An image without the hives and without Hives/ gets the
// disks, and then an error matching ErrNoHives: it is not a Windows OS base
// layer, and Windows would refuse it.
func ProcessBaseLayer(ctx context.Context, path string) error {
	fail := func(err error) error { return fmt.Errorf("wclayer: processing base layer %s: %w", path, err) }
	if err := checkFiles(path); err != nil {
		return fail(err)
	}
	_, herr := os.Lstat(filepath.Join(path, basedisk.HivesDir))
	_, lerr := os.Lstat(filepath.Join(path, basedisk.LayoutFile))
	between := func() error { return nil }
	var noHives error
	if errors.Is(herr, fs.ErrNotExist) && errors.Is(lerr, fs.ErrNotExist) {
		if _, err := basedisk.FindPath(path, winlayer.FilesDir, "Windows", "System32", "config"); err == nil {
			between = func() error { return basedisk.SetupHives(path) }
		} else {
			noHives = fmt.Errorf("template disks made; Hives/ and %s not made: %w", basedisk.LayoutFile, ErrNoHives)
		}
	}
	err := basedisk.MakeBaseAndDiff(ctx,
		filepath.Join(path, basedisk.ContainerScratchTemplateBase),
		filepath.Join(path, basedisk.ContainerScratchTemplate),
		basedisk.Options{Size: BaseScratchTemplateSize, Format: formatWith(host.Ext4, "")}, between)
	if err != nil {
		return fail(err)
	}
	if noHives != nil {
		return fail(noHives)
	}
	return nil
}

// ErrNoHives: a base layer has neither Hives/ nor registry hives in its image
// (Files/Windows/System32/config), so it is not a Windows OS base layer. It
// matches fs.ErrNotExist.
var ErrNoHives = fmt.Errorf("wclayer: the layer has no Hives/ and its image no Files/Windows/System32/config hives: %w", fs.ErrNotExist)

// ProcessUtilityVMImage post-processes a utility VM image whose files have
// been extracted to path/Files (path is the layer's UtilityVM folder). It
// makes the utility VM template the way
// computestorage.SetupUtilityVMBaseLayer does: SystemTemplateBase.vhdx, a
// dynamic 10 GiB VHDX formatted NTFS, and SystemTemplate.vhdx, its
// differencing child. Then it returns an error matching ErrWindowsOnly (and
// errors.ErrUnsupported): on Windows the base disk also receives the utility
// VM's system volume, built with registry and BCD edits that cannot be done
// on Linux, so the template holds an empty volume and cannot boot a utility
// VM. The disks stay; the error says what is missing.
func ProcessUtilityVMImage(ctx context.Context, path string) error {
	fail := func(err error) error { return fmt.Errorf("wclayer: processing utility VM image %s: %w", path, err) }
	if err := checkFiles(path); err != nil {
		return fail(err)
	}
	err := basedisk.MakeBaseAndDiff(ctx,
		filepath.Join(path, basedisk.UtilityVMTemplateBase),
		filepath.Join(path, basedisk.UtilityVMTemplate),
		basedisk.Options{Size: UtilityVMTemplateSize, Format: formatWith(host.NTFS, "")}, nil)
	if err != nil {
		return fail(err)
	}
	return fail(fmt.Errorf("template disks made with an empty volume; the system volume is not written: %w", ErrWindowsOnly))
}

// formatWith formats a new template disk with fsys, through the host engine.
func formatWith(fsys host.Filesystem, label string) func(context.Context, string) error {
	return func(ctx context.Context, path string) error {
		return host.FormatDiskFile(ctx, path, host.FormatOptions{Filesystem: fsys, Label: label, AssumeZeroed: true})
	}
}
