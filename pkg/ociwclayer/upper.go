package ociwclayer

import (
	"context"
	"io"

	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// ExportUpperToTar writes the changes a union of Windows layers holds in its
// writable layer to w as an OCI Windows layer tar: the diff that, imported over
// parentLayerPaths, gives the union's content. upperDir is the union's upper
// directory, whose contents are the new layer's Files/ (a scratch volume's
// Files/ folder); parentLayerPaths are the union's layer folders, immediate
// parent first.
//
// Removals (overlay whiteouts, and what an opaque directory hides) become
// whiteout entries; new files get the Windows metadata Windows gives files a
// container creates, and files copied up from a parent keep the parent's
// metadata with their new content and times — winlayer.UpperReader documents
// both. The output is deterministic and in the order ExportLayerToTar writes a
// layer folder, so importing it and exporting the imported layer gives the same
// bytes.
func ExportUpperToTar(ctx context.Context, w io.Writer, upperDir string, parentLayerPaths []string) error {
	r, err := winlayer.NewUpperReader(ctx, upperDir, parentLayerPaths)
	if err != nil {
		return err
	}
	defer r.Close()
	return EncodeTar(ctx, w, upperDir, r)
}
