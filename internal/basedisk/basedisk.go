// Package basedisk makes what a Windows base layer holds besides its files:
// the scratch template disks (a formatted dynamic VHDX and a differencing
// child of it, blank-base.vhdx and blank.vhdx, or SystemTemplateBase.vhdx and
// SystemTemplate.vhdx for a utility VM) and the Hives/ and Layout of a
// container base layer. Packages computestorage and wclayer share it.
package basedisk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// ErrWindowsOnly is returned for the steps of base-layer setup that edit a
// Windows system: the registry hives and boot configuration (BCD) of a
// utility VM's system volume. Nothing on Linux writes those. It matches
// errors.ErrUnsupported.
var ErrWindowsOnly = fmt.Errorf("hostcompute: utility VM system volume setup edits Windows registry and BCD data, which is not possible on Linux: %w", errors.ErrUnsupported)

// File names hcsshim and containerd give the disks in a base layer folder.
const (
	// Container scratch template: differencing child and its base.
	ContainerScratchTemplate     = "blank.vhdx"
	ContainerScratchTemplateBase = "blank-base.vhdx"
	// Utility VM template, under UtilityVM/.
	UtilityVMTemplate     = "SystemTemplate.vhdx"
	UtilityVMTemplateBase = "SystemTemplateBase.vhdx"
	// LayoutFile is written into a base layer with its Hives/.
	LayoutFile = "Layout"
	// HivesDir holds a base layer's base hives.
	HivesDir = "Hives"
	// layoutContent is what hcsshim's CimFS path writes into the layout file.
	layoutContent = "vhd-with-hives\n"
)

// BlockSize is the block size of the base and differencing VHDX files, as
// hcsshim creates them.
const BlockSize = 1 << 20

// Options describes the base disk MakeBaseAndDiff makes.
type Options struct {
	Size int64 // virtual size in bytes, a positive multiple of 1 MiB
	// Format makes the file system on the new disk file at path (the host
	// engine's host.FormatDiskFile): this package makes disk files and
	// attaches nothing itself.
	Format func(ctx context.Context, path string) error
}

// hives maps the registry hives of a Windows image, in
// Files/Windows/System32/config, to their names in a base layer's Hives/.
var Hives = [][2]string{
	{"SYSTEM", "SYSTEM_BASE"},
	{"SOFTWARE", "SOFTWARE_BASE"},
	{"SAM", "SAM_BASE"},
	{"SECURITY", "SECURITY_BASE"},
	{"DEFAULT", "DEFAULTUSER_BASE"},
}

// SetupHives creates Hives/ in the base layer folder layerPath with the five
// base hives as hard links to the image's
// Files/Windows/System32/config/{SYSTEM,SOFTWARE,SAM,SECURITY,DEFAULT} (found
// case-insensitively) named SYSTEM_BASE, SOFTWARE_BASE, SAM_BASE,
// SECURITY_BASE and DEFAULTUSER_BASE, and writes the Layout file
// ("vhd-with-hives"). Hives/ or Layout already present give an error
// matching fs.ErrExist.
func SetupHives(layerPath string) error {
	hivesDir := filepath.Join(layerPath, HivesDir)
	for _, name := range []string{hivesDir, filepath.Join(layerPath, LayoutFile)} {
		if _, err := os.Lstat(name); err == nil {
			return fmt.Errorf("%s: %w (remove it first)", name, fs.ErrExist)
		}
	}
	config, err := FindPath(layerPath, "Files", "Windows", "System32", "config")
	if err != nil {
		return err
	}
	var sources []string
	for _, h := range Hives {
		src, err := FindPath(config, h[0])
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}
	// Build Hives/ beside its final name and rename it into place.
	tmp, err := os.MkdirTemp(layerPath, ".hives-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, h := range Hives {
		if err := os.Link(sources[i], filepath.Join(tmp, h[1])); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(layerPath, LayoutFile), []byte(layoutContent), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, hivesDir); err != nil {
		os.Remove(filepath.Join(layerPath, LayoutFile))
		return err
	}
	return atomicfile.SyncDir(layerPath)
}

// FindPath returns dir/elems... where each element is matched
// case-insensitively, as Windows names are.
func FindPath(dir string, elems ...string) (string, error) {
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

// MakeBaseAndDiff replaces base and diff with a new formatted dynamic VHDX and
// a differencing child of it; between the two it calls between, if set.
// Each disk is made under a temporary name and renamed into place (the
// child after the base, as its locator names the base's final path). On
// failure both are removed.
func MakeBaseAndDiff(ctx context.Context, base, diff string, opts Options, between func() error) (err error) {
	if opts.Size <= 0 || opts.Size%BlockSize != 0 {
		return fmt.Errorf("size %d is not a positive multiple of 1 MiB", opts.Size)
	}
	base, err = filepath.Abs(base)
	if err != nil {
		return err
	}
	diff, err = filepath.Abs(diff)
	if err != nil {
		return err
	}
	if base == diff {
		return fmt.Errorf("base and differencing disk are the same file %s", base)
	}
	for _, p := range []string{diff, base} {
		if err := removeDisk(p); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			removeDisk(diff)
			removeDisk(base)
		}
	}()
	tmp := TempName(base)
	if err := vhd.CreateVHDX(tmp, vhd.VHDXCreateOptions{Size: opts.Size, BlockSize: BlockSize}); err != nil {
		return err
	}
	if opts.Format == nil {
		return fmt.Errorf("basedisk: no formatter for %s", base)
	}
	err = opts.Format(ctx, tmp)
	if err == nil {
		err = renameSynced(tmp, base)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if between != nil {
		if err := between(); err != nil {
			return err
		}
	}
	tmp = TempName(diff)
	if err := vhd.CreateVHDX(tmp, vhd.VHDXCreateOptions{Parent: base, BlockSize: BlockSize}); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := renameSynced(tmp, diff); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// TempName is where a disk is made before it is renamed to path. Disks
// left under such names by a crash are removed by the next setup.
func TempName(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
}

// removeDisk removes the disk at path and any temporary copy of it.
func removeDisk(path string) error {
	for _, p := range []string{path, TempName(path)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func renameSynced(from, to string) error { return atomicfile.Rename(from, to) }
