package computestorage

import (
	"context"

	"github.com/hostcompute/hostcompute/wclayer"
)

// ImportLayer imports a container layer.
//
// layerPath is the folder to import the layer to; it must not exist or be empty, and
// it is created if missing. The layer appears there only when the import is complete.
//
// sourceFolderPath is a pre-existing transport folder holding the layer to import, as
// ExportLayer writes it (see wclayer.ExportLayer for the format).
//
// layerData describes the parent layers: the Path of each of its Layers, in order
// (immediate parent first), must be an existing layer folder. Its SchemaVersion and
// FilterType are not used.
func ImportLayer(ctx context.Context, layerPath, sourceFolderPath string, layerData LayerData) (err error) {
	return wclayer.ImportLayer(ctx, layerPath, sourceFolderPath, layerData.parentPaths())
}
