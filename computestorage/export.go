package computestorage

import (
	"context"

	"github.com/hostcompute/hostcompute/wclayer"
)

// ExportLayer exports a container layer.
//
// layerPath is the folder holding the layer to export.
//
// exportFolderPath is the folder to write the layer to, in the transport format that
// ImportLayer reads (see wclayer.ExportLayer). It may exist, and must then be empty; the
// exported folder appears there only when complete.
//
// layerData describes the parent layers, immediate parent first. A layer folder holds
// all of its own content, so the parents are not read.
//
// options are the export options. With IsWritableLayer, a writable layer's folder is
// exported from its files like any other layer: its changes to the parents are the
// files, removals and metadata the folder holds.
func ExportLayer(ctx context.Context, layerPath, exportFolderPath string, layerData LayerData, options ExportLayerOptions) (err error) {
	return wclayer.ExportLayer(ctx, layerPath, exportFolderPath, layerData.parentPaths())
}
