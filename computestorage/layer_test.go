package computestorage

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
	"github.com/hostcompute/hostcompute/wclayer"
)

// exportTar returns the OCI Windows tar of the layer at path.
func exportTar(t *testing.T, path string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ociwclayer.ExportLayerToTar(context.Background(), &b, path, nil); err != nil {
		t.Fatalf("exporting %s as a tar: %v", path, err)
	}
	return b.Bytes()
}

func TestImportExportDestroy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	mid := filepath.Join(dir, "mid")
	if err := wclayer.CreateLayer(ctx, base, ""); err != nil {
		t.Fatal(err)
	}
	if err := wclayer.CreateLayer(ctx, mid, base); err != nil {
		t.Fatal(err)
	}
	parents := []string{mid, base}
	layerData := LayerData{
		Layers: []Layer{
			{Id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", Path: mid},
			{Id: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Path: base},
		},
		FilterType: WCIFS,
	}

	// A layer with content, including a removal, from a generated OCI tar.
	var in bytes.Buffer
	if err := sampletar.Write(&in, sampletar.Options{Seed: 11, Files: 40, Bytes: 256 << 10, Hives: true, Whiteouts: []string{"Files/old/x.txt"}}); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "layer")
	if _, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(in.Bytes()), layer, parents); err != nil {
		t.Fatal(err)
	}
	want := exportTar(t, layer)

	// The seed describes the export folder as pre-existing.
	export := filepath.Join(dir, "export")
	if err := os.Mkdir(export, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ExportLayer(ctx, layer, export, layerData, ExportLayerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(export, "tombstones.txt")); err != nil {
		t.Errorf("export folder: %v", err)
	}
	// The import folder is created if missing.
	again := filepath.Join(dir, "imported", "again")
	if err := ImportLayer(ctx, again, export, layerData); err != nil {
		t.Fatal(err)
	}
	if chain, err := winlayer.Parents(again); err != nil || !reflect.DeepEqual(chain, parents) {
		t.Errorf("imported layer's parents %q, %v; want %q", chain, err, parents)
	}
	if got := exportTar(t, again); !bytes.Equal(got, want) {
		t.Error("layer imported from the export folder differs from the original")
	}

	// A writable layer is exported the same way.
	writable := filepath.Join(dir, "export-writable")
	if err := ExportLayer(ctx, layer, writable, layerData, ExportLayerOptions{IsWritableLayer: true}); err != nil {
		t.Fatal(err)
	}
	again2 := filepath.Join(dir, "again2")
	if err := ImportLayer(ctx, again2, writable, layerData); err != nil {
		t.Fatal(err)
	}
	if got := exportTar(t, again2); !bytes.Equal(got, want) {
		t.Error("layer imported from the writable export differs from the original")
	}

	// Exporting into a folder that is not empty fails and leaves it alone.
	if err := ExportLayer(ctx, layer, export, layerData, ExportLayerOptions{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("exporting into a non-empty folder: %v, want an error matching fs.ErrExist", err)
	}

	for _, p := range []string{again, again2} {
		if err := DestroyLayer(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after DestroyLayer: %v", p, err)
		}
		if err := DestroyLayer(ctx, p); err != nil {
			t.Errorf("destroying a missing layer: %v", err)
		}
	}
	if ok, err := wclayer.LayerExists(ctx, layer); !ok || err != nil {
		t.Errorf("source layer exists = %v, %v after destroying the imports", ok, err)
	}
}
