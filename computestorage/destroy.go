package computestorage

import (
	"context"

	"github.com/hostcompute/hostcompute/wclayer"
)

// DestroyLayer deletes a container layer.
//
// layerPath is the folder holding the layer. The folder and everything in it are
// removed; it is renamed aside first, so a crash midway never leaves a half-removed
// layer at layerPath. A missing folder is not an error.
func DestroyLayer(ctx context.Context, layerPath string) (err error) {
	return wclayer.DestroyLayer(ctx, layerPath)
}
