package hostcompute

import (
	"context"

	"github.com/hostcompute/hostcompute/wclayer"
)

// ActivateLayer mounts the file system of layer id: for a read-write layer its
// scratch disk is attached and mounted (see wclayer.ActivateLayer for where);
// for a read-only layer nothing is done. Each activation must be ended by a
// DeactivateLayer.
func ActivateLayer(info DriverInfo, id string) error {
	return wclayer.ActivateLayer(context.Background(), layerPath(info, id))
}

// DeactivateLayer ends one activation of layer id; the last one unmounts its
// volume and detaches its disk. The last activation of a layer still prepared
// is refused (wclayer.ErrStillPrepared): call UnprepareLayer first.
func DeactivateLayer(info DriverInfo, id string) error {
	return wclayer.DeactivateLayer(context.Background(), layerPath(info, id))
}

// PrepareLayer mounts the union of parentLayerPaths (immediate parent first)
// with the activated read-write layer layerID as its writable layer; see
// wclayer.PrepareLayer. Undo it with UnprepareLayer.
func PrepareLayer(info DriverInfo, layerID string, parentLayerPaths []string) error {
	return wclayer.PrepareLayer(context.Background(), layerPath(info, layerID), parentLayerPaths)
}

// UnprepareLayer ends one PrepareLayer of layer layerID; the last one
// unmounts the union.
func UnprepareLayer(info DriverInfo, layerID string) error {
	return wclayer.UnprepareLayer(context.Background(), layerPath(info, layerID))
}

// GetLayerMountPath returns where layer id can be used: its union when
// prepared, its volume when only activated, else its folder.
func GetLayerMountPath(info DriverInfo, id string) (string, error) {
	return wclayer.GetLayerMountPath(context.Background(), layerPath(info, id))
}

// CreateSandboxLayer creates the read-write layer layerID, whose scratch disk
// is a sparse 20 GiB VHDX formatted ext4 (wclayer.CreateScratchLayer).
// parentLayerPaths is the full chain, the direct parent (parentID) first; when
// it is empty and parentID is not, the chain is the folder of parentID
// followed by that layer's own layerchain.json.
func CreateSandboxLayer(info DriverInfo, layerID, parentID string, parentLayerPaths []string) error {
	ctx := context.Background()
	if len(parentLayerPaths) == 0 && parentID != "" {
		chain, err := wclayer.ParentChain(layerPath(info, parentID))
		if err != nil {
			return err
		}
		parentLayerPaths = chain
	}
	return wclayer.CreateScratchLayer(ctx, layerPath(info, layerID), parentLayerPaths)
}

// ExpandSandboxSize grows the scratch disk of layer layerID, and its file
// system, to at least size bytes (wclayer.ExpandScratchSize).
func ExpandSandboxSize(info DriverInfo, layerID string, size uint64) error {
	return wclayer.ExpandScratchSize(context.Background(), layerPath(info, layerID), size)
}

// ProcessBaseLayer post-processes a base layer whose files were extracted to
// path/Files: it makes the container scratch template disks blank-base.vhdx
// and blank.vhdx (and Hives/ when missing); see wclayer.ProcessBaseLayer.
func ProcessBaseLayer(path string) error {
	return wclayer.ProcessBaseLayer(context.Background(), path)
}

// ProcessUtilityVMImage post-processes a utility VM image whose files were
// extracted to path/Files: it makes the template disks SystemTemplateBase.vhdx
// and SystemTemplate.vhdx, then returns an error matching
// errors.ErrUnsupported, because the utility VM's system volume (registry and
// BCD edits) cannot be written on Linux; see wclayer.ProcessUtilityVMImage.
func ProcessUtilityVMImage(path string) error {
	return wclayer.ProcessUtilityVMImage(context.Background(), path)
}
