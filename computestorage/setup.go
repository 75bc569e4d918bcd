package computestorage

import (
	"context"
	"fmt"
	"os"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
	"github.com/hostcompute/hostcompute/internal/basedisk"
)

// ErrWindowsOnly is returned for the steps of base-layer setup that edit a
// Windows system: the registry hives and boot configuration (BCD) of a
// utility VM's system volume. Nothing on Linux writes those. It matches
// errors.ErrUnsupported. wclayer.ErrWindowsOnly is the same value.
var ErrWindowsOnly = basedisk.ErrWindowsOnly

// File names hcsshim and containerd give the disks these functions make, in
// a base layer folder.
const (
	// Container scratch template: differencing child and its base.
	ContainerScratchTemplate     = basedisk.ContainerScratchTemplate
	ContainerScratchTemplateBase = basedisk.ContainerScratchTemplateBase
	// Utility VM template, under UtilityVM/.
	UtilityVMTemplate     = basedisk.UtilityVMTemplate
	UtilityVMTemplateBase = basedisk.UtilityVMTemplateBase
	// LayoutFile is written into a base layer by SetupBaseOSLayer.
	LayoutFile = basedisk.LayoutFile
)

// SetupBaseOSLayer sets up a layer that contains a base OS for a container.
//
// For options.Type OsLayerTypeContainer (vhdHandle is unused and may be nil)
// it does what hcsshim's CimFS code does in place of the Windows call: it
// creates Hives/ with the five base hives as hard links to the image's
// Files/Windows/System32/config/{SYSTEM,SOFTWARE,SAM,SECURITY,DEFAULT}
// (found case-insensitively) named SYSTEM_BASE, SOFTWARE_BASE, SAM_BASE,
// SECURITY_BASE and DEFAULTUSER_BASE, and writes the Layout file
// ("vhd-with-hives"). Hives/ or Layout already present give an error
// matching fs.ErrExist, as on Windows.
//
// For OsLayerTypeVM Windows writes the utility VM's system volume into the
// disk, with registry and BCD edits: that returns ErrWindowsOnly, and
// nothing is changed.
func SetupBaseOSLayer(ctx context.Context, layerPath string, vhdHandle *VirtualDisk, options OsLayerOptions) (err error) {
	return setupBaseOS(ctx, layerPath, options)
}

// SetupBaseOSVolume sets up a volume that contains a base OS for a
// container. volumePath is where the layer's volume is mounted; on Linux the
// setup of a container base layer does not write into it, so this does what
// SetupBaseOSLayer does for the layer folder. A missing volumePath is an
// error matching fs.ErrNotExist.
func SetupBaseOSVolume(ctx context.Context, layerPath, volumePath string, options OsLayerOptions) (err error) {
	if fi, err := os.Stat(volumePath); err != nil {
		return fmt.Errorf("computestorage: setting up base OS volume %s: %w", volumePath, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("computestorage: setting up base OS volume %s: not a directory", volumePath)
	}
	return setupBaseOS(ctx, layerPath, options)
}

func setupBaseOS(ctx context.Context, layerPath string, options OsLayerOptions) error {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: setting up base OS layer %s: %w", layerPath, err)
	}
	switch options.Type {
	case OsLayerTypeContainer:
	case OsLayerTypeVM:
		return fail(ErrWindowsOnly)
	default:
		return fail(fmt.Errorf("unknown layer type %q", options.Type))
	}
	if err := basedisk.SetupHives(layerPath); err != nil {
		return fail(err)
	}
	return nil
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
