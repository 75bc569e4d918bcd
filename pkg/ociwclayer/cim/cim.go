// Package cim converts between OCI Windows layer tars and CIM layers (package
// wclayer/cim), with hcsshim's pkg/ociwclayer/cim names. Both directions stream:
// a tar becomes a CIM without an intermediate folder, and a CIM layer becomes a
// tar byte-identical to what ociwclayer.ExportLayerToTar writes for the same layer
// in folder form.
package cim

import (
	"context"
	"io"

	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

// ImportCimLayerFromTar reads an OCI Windows layer tar from r and writes it as a CIM
// layer at layerPath. parentLayerPaths are the parent CIM layers, immediate parent
// first. It returns the sum of the sizes of the files' main data. On error nothing
// of the layer stays visible, except for the errors of CimLayerWriter.Close that
// say the layer was written without a step Linux cannot do
// (wcim.IsWrittenWithLimits: delta hive merging, utility VM boot setup).
func ImportCimLayerFromTar(ctx context.Context, r io.Reader, layerPath string, parentLayerPaths []string) (int64, error) {
	cw, err := wcim.NewCimLayerWriter(ctx, layerPath, parentLayerPaths)
	if err != nil {
		return 0, err
	}
	n, err := ociwclayer.DecodeTar(ctx, r, cw.EntryWriter())
	if err != nil {
		cw.Abort()
		return 0, err
	}
	if err := cw.Close(ctx); err != nil {
		if wcim.IsWrittenWithLimits(err) {
			return n, err
		}
		return 0, err
	}
	return n, nil
}

// ExportCimLayerToTar writes the CIM layer at layerPath to w as an OCI Windows layer
// tar: the layer's own entries and removals, not what it inherits.
// parentLayerPaths is accepted for symmetry with ociwclayer.ExportLayerToTar; the
// image itself names its parents.
func ExportCimLayerToTar(ctx context.Context, w io.Writer, layerPath string, parentLayerPaths []string) error {
	r, err := wcim.NewLayerReader(ctx, layerPath)
	if err != nil {
		return err
	}
	defer r.Close()
	return ociwclayer.EncodeTar(ctx, w, wcim.GetCimPathFromLayer(layerPath), r)
}
