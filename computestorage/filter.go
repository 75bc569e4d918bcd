package computestorage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/atomicfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
	"github.com/hostcompute/hostcompute/wclayer"
)

// ErrUnsupportedFilter means a LayerData or detach call names a filter type
// other than WCIFS and UnionFS. It matches errors.ErrUnsupported.
var ErrUnsupportedFilter = fmt.Errorf("computestorage: unsupported file system filter type: %w", errors.ErrUnsupported)

// checkFilter accepts the filter types realised with overlayfs; empty is
// accepted where allowEmpty (the layer storage filter, whose type is implied).
func checkFilter(t FileSystemFilterType, allowEmpty bool) error {
	switch {
	case t == WCIFS, t == UnionFS, t == "" && allowEmpty:
		return nil
	case t == "":
		return fmt.Errorf("%w: none given, want %s or %s", ErrUnsupportedFilter, WCIFS, UnionFS)
	}
	return fmt.Errorf("%w: %q, want %s or %s", ErrUnsupportedFilter, t, WCIFS, UnionFS)
}

// InitializeWritableLayer makes the folder layerPath a writable container
// layer over the parents in layerData: the folder (made if missing) gets a
// scratch disk sandbox.vhdx (a sparse 20 GiB dynamic VHDX formatted ext4, see
// wclayer.CreateScratchLayer) unless it holds one already, as when the caller
// copied blank.vhdx there, and a layerchain.json naming the parents. Calling
// it again on an initialized layer rewrites only the chain. A parent that is
// not a layer folder gives an error naming it.
func InitializeWritableLayer(ctx context.Context, layerPath string, layerData LayerData) (err error) {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: initializing writable layer %s: %w", layerPath, err)
	}
	if err := checkFilter(layerData.FilterType, true); err != nil {
		return fail(err)
	}
	parents := layerData.parentPaths()
	for _, p := range parents {
		if ok, err := winlayer.Exists(p); err != nil {
			return fail(err)
		} else if !ok {
			return fail(fmt.Errorf("parent %s: %w", p, winlayer.ErrNotLayer))
		}
	}
	if _, err := os.Lstat(layerPath); errors.Is(err, fs.ErrNotExist) {
		if err := wclayer.CreateScratchLayer(ctx, layerPath, parents); err != nil {
			return fail(err)
		}
		return nil
	}
	disk := filepath.Join(layerPath, wclayer.ScratchDisk)
	if _, err := os.Stat(disk); errors.Is(err, fs.ErrNotExist) {
		if err := wclayer.CreateScratchDisk(ctx, disk); err != nil {
			return fail(err)
		}
	} else if err != nil {
		return fail(err)
	}
	if err := writeLayerChain(layerPath, parents); err != nil {
		return fail(err)
	}
	return nil
}

// writeLayerChain replaces layerchain.json through a synced temporary file.
func writeLayerChain(layer string, parents []string) error {
	if parents == nil {
		parents = []string{}
	}
	data, err := json.Marshal(parents)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(layer, winlayer.LayerChainFile), data, 0o644)
}

// AttachLayerStorageFilter makes the writable layer at layerPath usable as a
// file system: it activates the layer (attaches and mounts its scratch disk)
// and prepares it (an overlayfs union of layerData's parents over it), as
// wclayer.ActivateLayer and wclayer.PrepareLayer do; wclayer.GetLayerMountPath
// then returns the union's path. Calls are counted: each needs a
// DetachLayerStorageFilter. FilterType may be empty, WCIFS or UnionFS, all
// realised with overlayfs; others give ErrUnsupportedFilter.
func AttachLayerStorageFilter(ctx context.Context, layerPath string, layerData LayerData) (err error) {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: attaching layer storage filter to %s: %w", layerPath, err)
	}
	if err := checkFilter(layerData.FilterType, true); err != nil {
		return fail(err)
	}
	if err := wclayer.ActivateLayer(ctx, layerPath); err != nil {
		return fail(err)
	}
	if err := wclayer.PrepareLayer(ctx, layerPath, layerData.parentPaths()); err != nil {
		if derr := wclayer.DeactivateLayer(context.Background(), layerPath); derr != nil {
			err = errors.Join(err, derr)
		}
		return fail(err)
	}
	return nil
}

// DetachLayerStorageFilter undoes one AttachLayerStorageFilter of the layer
// at layerPath: the last one unmounts the union, the volume and detaches the
// disk. A union in use gives an error and stays.
func DetachLayerStorageFilter(ctx context.Context, layerPath string) error {
	if err := wclayer.UnprepareLayer(ctx, layerPath); err != nil {
		return fmt.Errorf("computestorage: detaching layer storage filter from %s: %w", layerPath, err)
	}
	if err := wclayer.DeactivateLayer(ctx, layerPath); err != nil {
		return fmt.Errorf("computestorage: detaching layer storage filter from %s: %w", layerPath, err)
	}
	return nil
}

// AttachOverlayFilter puts the filter layerData.FilterType (WCIFS or UnionFS,
// both realised with overlayfs) over the writable volume mounted at
// volumePath, such as the path GetLayerVhdMountPath returns: an overlayfs
// union of layerData's parents with the volume's Files/ as the writable layer
// is mounted on top of volumePath itself, so the path shows the union from
// then on, as a volume with a Windows filter attached does. Calls are
// counted (the same parents each time); each needs a DetachOverlayFilter,
// which must come before the volume is unmounted (VirtualDisk.Close).
func AttachOverlayFilter(ctx context.Context, volumePath string, layerData LayerData) error {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: attaching %s filter to %s: %w", layerData.FilterType, volumePath, err)
	}
	if err := checkFilter(layerData.FilterType, false); err != nil {
		return fail(err)
	}
	if err := host.AttachOverlay(ctx, volumePath, layerData.parentPaths()); err != nil {
		return fail(err)
	}
	return nil
}

// DetachOverlayFilter undoes one AttachOverlayFilter of the volume at
// volumePath; the last one unmounts the union from over the volume.
// filterType must be WCIFS or UnionFS.
func DetachOverlayFilter(ctx context.Context, volumePath string, filterType FileSystemFilterType) error {
	fail := func(err error) error {
		return fmt.Errorf("computestorage: detaching %s filter from %s: %w", filterType, volumePath, err)
	}
	if err := checkFilter(filterType, false); err != nil {
		return fail(err)
	}
	if err := host.DetachOverlay(ctx, volumePath); err != nil {
		return fail(err)
	}
	return nil
}
