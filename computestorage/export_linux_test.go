package computestorage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/wclayer"
)

// TestExportWritableLayer: the export of a writable layer is its changes to
// its parents — a file written and a file of the parents deleted through the
// filter — not an empty folder.
func TestExportWritableLayer(t *testing.T) {
	state := needFilterState(t)
	ctx := context.Background()
	dir := t.TempDir()
	data, _ := filterStack(t, dir, WCIFS)
	layer := filepath.Join(dir, "rw")
	if err := InitializeWritableLayer(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	if err := AttachLayerStorageFilter(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	union, err := wclayer.GetLayerMountPath(ctx, layer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(union, "note.txt"), []byte("written in the container"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Delete the first regular file the union shows.
	var victim string
	filepath.WalkDir(union, func(p string, d os.DirEntry, err error) error {
		if err == nil && victim == "" && d.Type().IsRegular() && d.Name() != "note.txt" {
			victim = p
		}
		return err
	})
	if victim == "" {
		t.Fatal("the union shows no file of the parents")
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	if err := DetachLayerStorageFilter(ctx, layer); err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(dir, "export")
	if err := ExportLayer(ctx, layer, export, data, ExportLayerOptions{IsWritableLayer: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(export, "Files", "note.txt"))
	if err != nil || !strings.HasSuffix(string(b), "written in the container") {
		t.Errorf("exported note.txt: %q %v", b, err)
	}
	rel, _ := filepath.Rel(union, victim)
	tomb, err := os.ReadFile(filepath.Join(export, "tombstones.txt"))
	if err != nil || !strings.Contains(string(tomb), `\`+strings.ReplaceAll(rel, "/", `\`)+"\n") {
		t.Errorf("tombstones.txt %q (%v) lacks %s", tomb, err, rel)
	}
	checkFiltersGone(t, state, layer)
}
