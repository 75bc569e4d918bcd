package ociwclayer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// fuzzSeeds are small valid and hostile archives.
func fuzzSeeds(t testing.TB) [][]byte {
	var small bytes.Buffer
	sampletar.Write(&small, sampletar.Options{Seed: 1, Files: 3, Bytes: 300, Unicode: true})
	return [][]byte{
		small.Bytes(),
		buildTar(t, dirEnt("Files"), file("Files/a", "x"), file("Files/a:s", "y"), hardlink("Files/b", "Files/a")),
		buildTar(t, symlink("Files/l", `..\..`), file("Files/l/x", "x")),
		buildTar(t, file("../x", "x")),
		buildTar(t, withPAX(file("Files/a", "x"), "MSWINDOWS.rawsd", "AQAEgBQAAAAkAAAAAAAAADAAAAA=")),
	}
}

// FuzzImportLayerFromTar feeds arbitrary archives to the importer. Properties: it never
// panics; on failure nothing is left at the destination and no file appears outside
// it; on success the layer exports, and the export imports again.
func FuzzImportLayerFromTar(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		layer := filepath.Join(dir, "l")
		_, err := ImportLayerFromTar(context.Background(), bytes.NewReader(data), layer, nil, winlayer.WithSync(false))
		ents, _ := os.ReadDir(dir)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("failed import (%v) left %v", err, ents)
			}
			var te *TarError
			var le *winlayer.LayerError
			if !errors.As(err, &te) && !errors.As(err, &le) {
				t.Fatalf("error %v is neither a TarError nor a LayerError", err)
			}
			return
		}
		if len(ents) != 1 || ents[0].Name() != "l" {
			t.Fatalf("import wrote %v beside the layer", ents)
		}
		var out bytes.Buffer
		if err := ExportLayerToTar(context.Background(), &out, layer, nil); err != nil {
			if errors.Is(err, ErrUnsupportedEntry) {
				return
			}
			t.Fatalf("export of an imported layer: %v", err)
		}
		if _, err := ImportLayerFromTar(context.Background(), bytes.NewReader(out.Bytes()), filepath.Join(dir, "again"), nil, winlayer.WithSync(false)); err != nil {
			t.Fatalf("re-import of an export: %v", err)
		}
	})
}

// FuzzScanTar checks that the scanner never panics and names only clean entries.
func FuzzScanTar(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ScanTar(context.Background(), bytes.NewReader(data), func(e *winlayer.Entry) error {
			if strings.Contains(e.Name, "..") && !strings.Contains(e.Name, "...") {
				if _, err := winlayer.CleanName(e.Name); err != nil {
					t.Fatalf("scanner passed entry %q: %v", e.Name, err)
				}
			}
			return nil
		})
	})
}
