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
// layerData describes the parent layers, immediate parent first. A read-only layer
// folder holds all of its own content, so the parents are not read for it.
//
// A writable layer (a folder with a scratch disk, as InitializeWritableLayer makes)
// exports its changes to the parents in layerData (its layerchain.json when
// layerData names none): what was written through its union, read from the upper
// directory on its disk, with deletions as tombstones, files copied up from a parent
// keeping the parent's Windows metadata, and new files with the metadata Windows
// gives files a container creates (see wclayer.ExportLayer). The disk is mounted for
// the time of the export when it is not.
//
// options are the export options. IsWritableLayer is accepted for compatibility:
// whether the layer is writable is known from its folder.
func ExportLayer(ctx context.Context, layerPath, exportFolderPath string, layerData LayerData, options ExportLayerOptions) (err error) {
	return wclayer.ExportLayer(ctx, layerPath, exportFolderPath, layerData.parentPaths())
}
