// Package wclayer is hcsshim's layer management API on Linux: the same functions and
// signatures, working on layer folders with Linux's own parts.
//
// A layer is a folder chosen by the caller. Its Files/, Hives/ and UtilityVM/Files/
// hold real files, browsable and unionable; the Windows metadata a Linux file cannot
// carry (times, attributes, security descriptors, EAs, reparse data, alternate data
// streams) is kept beside them by package winlayer, losslessly. Names given to this
// package are Windows paths relative to the layer (`Files\Windows\System32`).
//
// Writers stage a layer beside its destination and rename it into place on Close, so a
// failed or killed import leaves no layer; the next writer in the same parent folder
// removes the remains.
//
// A read-write (scratch) layer is a layer folder holding sandbox.vhdx, a sparse disk
// formatted ext4 (CreateScratchLayer); ExpandScratchSize grows it and its file system
// (see scratch.go). ActivateLayer attaches and mounts that disk, PrepareLayer puts an
// overlayfs union of the parents over it, and both are counted and undone in reverse
// order by UnprepareLayer and DeactivateLayer (see activate.go and package host
// for where things are mounted and how a crashed process's state is recovered).
// ProcessBaseLayer and ProcessUtilityVMImage make a base layer's template disks
// (see baselayer.go; the utility VM's system volume is Windows-only).
package wclayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/pkg/guid"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// ErrNotSupportedOnLinux is returned by functions whose Windows behaviour has no
// meaning on Linux. It matches errors.ErrUnsupported.
var ErrNotSupportedOnLinux = fmt.Errorf("wclayer: not supported on Linux: %w", errors.ErrUnsupported)

// WC_LAYER_DESCRIPTOR describes a layer as the Windows layer APIs take it: its ID
// (NameToGuid of the folder name), flags (bit 31 "dirty": created from a sandbox
// snapshot) and folder path.
//
//nolint:revive // the name is the Windows structure's, kept for ports.
type WC_LAYER_DESCRIPTOR struct {
	LayerId guid.GUID //nolint:revive
	Flags   uint32
	Path    string
}

// LayerDescriptors returns the descriptors of the given layer folders, in order.
func LayerDescriptors(ctx context.Context, paths []string) ([]WC_LAYER_DESCRIPTOR, error) {
	var out []WC_LAYER_DESCRIPTOR
	for _, p := range paths {
		id, err := LayerID(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, WC_LAYER_DESCRIPTOR{LayerId: id, Path: p})
	}
	return out, nil
}

// CreateLayer creates a new, empty, read-only layer at path on top of parent (""
// for a base layer). The parent's own chain, from its layerchain.json, follows it.
func CreateLayer(ctx context.Context, path, parent string) error {
	var parents []string
	if parent != "" {
		var err error
		if parents, err = ParentChain(parent); err != nil {
			return err
		}
	}
	return winlayer.Create(ctx, path, parents)
}

// LayerExists reports whether a layer exists at path.
func LayerExists(ctx context.Context, path string) (bool, error) {
	return winlayer.Exists(path)
}

// DestroyLayer removes the layer folder at path and everything in it. The folder is
// renamed aside first, so a crash midway never leaves a half-removed layer at path. A
// missing folder is not an error.
func DestroyLayer(ctx context.Context, path string) error {
	return winlayer.Destroy(ctx, path)
}

// LayerID returns the layer ID of a layer folder: NameToGuid of its last path element.
func LayerID(ctx context.Context, path string) (guid.GUID, error) {
	return NameToGuid(ctx, filepath.Base(path))
}

// NameToGuid converts a name into a GUID deterministically: the same name gives the
// same GUID on every machine. The Host Compute Service's own algorithm is not public, so
// these GUIDs differ from the ones Windows computes; see guid.NameToGuid.
func NameToGuid(ctx context.Context, name string) (guid.GUID, error) {
	return guid.NameToGuid(name), nil
}

// GrantVmAccess gives a virtual machine access to a file. Linux has no per-VM security
// principals (virtual machines reach files through the access of the process that runs
// them), so this only checks that the file exists.
func GrantVmAccess(ctx context.Context, vmid string, filepath string) error { //nolint:revive
	if _, err := os.Stat(filepath); err != nil {
		return fmt.Errorf("wclayer: granting VM %s access: %w", vmid, err)
	}
	return nil
}

// GetSharedBaseImages enumerates the Windows central image store, which does not exist
// on Linux. It returns ErrNotSupportedOnLinux.
func GetSharedBaseImages(ctx context.Context) (string, error) {
	return "", ErrNotSupportedOnLinux
}

// ParentChain returns the layer folder at path followed by its own parents, from
// its layerchain.json: the parentLayerPaths of a layer whose direct parent is path.
func ParentChain(path string) ([]string, error) {
	chain, err := winlayer.Parents(path)
	if err != nil {
		return nil, err
	}
	return append([]string{path}, chain...), nil
}
