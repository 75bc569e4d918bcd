package computestorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrWindowsOnly is returned for the steps of base-layer setup that edit a
// Windows system: the registry hives and boot configuration (BCD) of a
// utility VM's system volume. Nothing on Linux writes those. It matches
// errors.ErrUnsupported.
var ErrWindowsOnly = fmt.Errorf("computestorage: utility VM system volume setup edits Windows registry and BCD data, which is not possible on Linux: %w", errors.ErrUnsupported)

// File names hcsshim and containerd give the disks these functions make, in
// a base layer folder.
const (
	// Container scratch template: differencing child and its base.
	ContainerScratchTemplate     = "blank.vhdx"
	ContainerScratchTemplateBase = "blank-base.vhdx"
	// Utility VM template, under UtilityVM/.
	UtilityVMTemplate     = "SystemTemplate.vhdx"
	UtilityVMTemplateBase = "SystemTemplateBase.vhdx"
	// LayoutFile is written into a base layer by SetupBaseOSLayer.
	LayoutFile = "Layout"
	// layoutContent is what hcsshim's CimFS path writes into the layout file.
	layoutContent = "vhd-with-hives\n"
)

// hives maps the registry hives of a Windows image, in
// Files/Windows/System32/config, to their names in a base layer's Hives/.
var hives = [][2]string{
	{"SYSTEM", "SYSTEM_BASE"},
	{"SOFTWARE", "SOFTWARE_BASE"},
	{"SAM", "SAM_BASE"},
	{"SECURITY", "SECURITY_BASE"},
	{"DEFAULT", "DEFAULTUSER_BASE"},
}

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
	hivesDir := filepath.Join(layerPath, "Hives")
	for _, name := range []string{hivesDir, filepath.Join(layerPath, LayoutFile)} {
		if _, err := os.Lstat(name); err == nil {
			return fail(fmt.Errorf("%s: %w (remove it first)", name, fs.ErrExist))
		}
	}
	config, err := findPath(layerPath, "Files", "Windows", "System32", "config")
	if err != nil {
		return fail(err)
	}
	var sources []string
	for _, h := range hives {
		src, err := findPath(config, h[0])
		if err != nil {
			return fail(err)
		}
		sources = append(sources, src)
	}
	// Build Hives/ beside its final name and rename it into place.
	tmp, err := os.MkdirTemp(layerPath, ".hives-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	for i, h := range hives {
		if err := os.Link(sources[i], filepath.Join(tmp, h[1])); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fail(err)
	}
	if err := writeFileSynced(filepath.Join(layerPath, LayoutFile), []byte(layoutContent)); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, hivesDir); err != nil {
		os.Remove(filepath.Join(layerPath, LayoutFile))
		return fail(err)
	}
	return syncDir(layerPath)
}

// findPath returns dir/elems... where each element is matched
// case-insensitively, as Windows names are.
func findPath(dir string, elems ...string) (string, error) {
	p := dir
	for _, e := range elems {
		if _, err := os.Lstat(filepath.Join(p, e)); err == nil {
			p = filepath.Join(p, e)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return "", err
		}
		found := ""
		for _, de := range entries {
			if strings.EqualFold(de.Name(), e) {
				found = de.Name()
				break
			}
		}
		if found == "" {
			return "", fmt.Errorf("%s: %w", filepath.Join(p, e), fs.ErrNotExist)
		}
		p = filepath.Join(p, found)
	}
	return p, nil
}

// writeFileSynced writes a new file through a synced temporary file.
func writeFileSynced(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
