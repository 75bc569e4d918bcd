package compute

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// Names in a scratch folder.
const (
	ScratchDisk    = "sandbox.vhdx" // the scratch disk over ext4 layer images
	ScratchUpper   = "upper"        // the overlay's upper directory over directory layers
	ScratchWork    = "work"
	layerImageName = "layer.vhd"
)

// Mount sources naming the owner of a directory-layer union in mountinfo.
const OverlaySourcePrefix = "hcs-compute:"

// layerKind classifies a layer path: "ext4" (an image file or a folder with
// layer.vhd), "dir" (a directory tree) or "windows" (a folder with Files/).
func layerKind(p string) (kind, path string, err error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", "", err
	}
	if st.Mode().IsRegular() {
		return "ext4", p, nil
	}
	if !st.IsDir() {
		return "", "", fmt.Errorf("%w: layer %s is neither a file nor a directory", ErrInvalidArgument, p)
	}
	if f := filepath.Join(p, layerImageName); exists(f) {
		return "ext4", f, nil
	}
	if f := filepath.Join(p, "Files"); exists(f) {
		return "windows", f, nil
	}
	return "dir", p, nil
}

// mountRoot makes the container's root file system under dir/root and fills in
// r.Rootfs and r.RootKind.
func mountRoot(ctx context.Context, dir string, r *record) error {
	cfg := &r.Config
	if cfg.Scratch == "" {
		return fmt.Errorf("%w: no scratch folder (LayerFolderPath)", ErrInvalidArgument)
	}
	if len(cfg.Layers) == 0 {
		return fmt.Errorf("%w: no layers", ErrInvalidArgument)
	}
	scratch, err := filepath.Abs(cfg.Scratch)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return fmt.Errorf("scratch folder: %w", err)
	}
	kinds := map[string]int{}
	paths := make([]string, len(cfg.Layers))
	for i, l := range cfg.Layers {
		k, p, err := layerKind(l.Path)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, l.Path, err)
		}
		kinds[k]++
		if paths[i], err = filepath.Abs(p); err != nil {
			return err
		}
	}
	root := filepath.Join(dir, rootDir)
	switch {
	case kinds["ext4"] == len(paths):
		return mountLCOW(ctx, r, scratch, root, paths)
	case kinds["ext4"] == 0 && exists(filepath.Join(scratch, ScratchDisk)) && kinds["windows"] == len(paths):
		return mountLayermount(ctx, r, scratch, root)
	case kinds["ext4"] == 0:
		if cfg.ScratchSize != 0 {
			return fmt.Errorf("%w: a scratch size needs a scratch disk: with directory layers the scratch folder %s is a directory without a size (give ext4 layer images, or a Windows scratch layer folder with %s)", ErrUnsupported, scratch, ScratchDisk)
		}
		return mountOverlayRoot(ctx, r, scratch, root, paths)
	}
	return fmt.Errorf("%w: layers mix ext4 images with directories; use one kind for a container", ErrUnsupported)
}

func mountLCOW(ctx context.Context, r *record, scratch, root string, paths []string) error {
	disk := filepath.Join(scratch, ScratchDisk)
	var opts []host.StackOption
	grow := false
	if size := int64(r.Config.ScratchSize); size > 0 {
		size = (size + (1<<20 - 1)) &^ (1<<20 - 1)
		if size < 32<<20 {
			size = 32 << 20
		}
		if exists(disk) {
			changed, err := host.GrowDiskFile(disk, size)
			if err != nil {
				return fmt.Errorf("growing scratch disk %s: %w", disk, err)
			}
			grow = changed
		} else {
			opts = append(opts, host.WithScratchSize(size))
		}
	}
	// The container's stack is the host engine's LCOW stack: the layer disks
	// attached read-only, the scratch disk mounted at root, the union at
	// root/rootfs.
	closer, err := host.MountLCOW(ctx, host.LCOWStack{ContainerID: r.ID, Layers: paths, Scratch: disk, Root: root}, opts...)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(root, host.LCOWRootfsDir)
	if grow {
		// The disk grew: grow its file system online to match.
		ms, err := mountinfo.Lookup(root)
		if err == nil && len(ms) > 0 {
			err = host.GrowFilesystem(ctx, ms[len(ms)-1].Source)
		}
		if err != nil {
			closer.Release(ctx)
			return fmt.Errorf("growing the file system of %s: %w", disk, err)
		}
	}
	r.Rootfs, r.RootKind = rootfs, "lcow"
	return nil
}

func mountOverlayRoot(ctx context.Context, r *record, scratch, root string, paths []string) error {
	upper, work := filepath.Join(scratch, ScratchUpper), filepath.Join(scratch, ScratchWork)
	rootfs := filepath.Join(root, "rootfs")
	for _, d := range []string{upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	ov := host.Overlay{Lower: paths, Upper: upper, Work: work, Source: OverlaySourcePrefix + r.ID}
	// Nothing to undo in this process: releaseRoot takes the union down from
	// the mount table, whoever made it.
	if _, err := host.Apply(ctx, host.Plan{host.OverlayMount(rootfs, ov)}); err != nil {
		return err
	}
	r.Rootfs, r.RootKind = rootfs, "overlay"
	return nil
}

// mountLayermount prepares a Windows scratch layer folder (sandbox.vhdx, made by
// wclayer's CreateScratchLayer) over Windows layer folders, as wclayer's
// ActivateLayer and PrepareLayer do; a folder the caller prepared already is
// used as it is.
func mountLayermount(ctx context.Context, r *record, scratch, root string) error {
	acts, preps, err := host.LayerState(ctx, scratch)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parents := make([]string, len(r.Config.Layers))
	for i, l := range r.Config.Layers {
		parents[i] = l.Path
	}
	if preps == 0 {
		r.RootKind, r.Activations = "layermount", acts
		// Recorded before the first count is taken, so that a crash after it is
		// undone by the next open.
		if err := writeJSON(filepath.Join(filepath.Dir(root), recordFile), r); err != nil {
			return err
		}
		if err := host.Activate(ctx, scratch, filepath.Join(scratch, ScratchDisk)); err != nil {
			return err
		}
		if err := host.Prepare(ctx, scratch, parents); err != nil {
			host.Deactivate(ctx, scratch)
			return err
		}
	} else {
		r.RootKind = "layermount-caller"
	}
	p, err := host.MountPath(ctx, scratch)
	if err != nil {
		return err
	}
	r.Rootfs = p
	return nil
}

// releaseRoot undoes mountRoot, from what the kernel and layermount's records
// show, so it also cleans up after a crash half-way through mountRoot.
func releaseRoot(ctx context.Context, dir string, r *record) error {
	var errs []error
	root := filepath.Join(dir, rootDir)
	if exists(root) {
		if _, err := host.UnmountAll(ctx, root, true); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if r != nil && r.RootKind == "layermount" {
		scratch, _ := filepath.Abs(r.Config.Scratch)
		acts, preps, err := host.LayerState(ctx, scratch)
		if err == nil {
			if preps > 0 {
				if err := host.Unprepare(ctx, scratch); err != nil {
					errs = append(errs, err)
				}
			}
			if acts > r.Activations {
				if err := host.Deactivate(ctx, scratch); err != nil {
					errs = append(errs, err)
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		os.RemoveAll(root)
	}
	return errors.Join(errs...)
}
