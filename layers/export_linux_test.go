package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestExportLCOWScratch: what a container changes through its union exports,
// after the stack is released, as an OCI diff with a whiteout for a deleted
// lower file and an opaque marker for a lower directory replaced.
func TestExportLCOWScratch(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	ls := &LCOWLayers{Layers: threeLayers(t, dir), ScratchVHDPath: filepath.Join(dir, "sandbox.vhd")}
	if err := ExportLCOWScratch(ctx, io.Discard, ls.ScratchVHDPath); err == nil {
		t.Error("export of a missing scratch disk succeeded")
	}
	rootfs, _, closer, err := MountLCOWLayers(ctx, "c1", ls, filepath.Join(dir, "c1"), nil, WithScratchSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(rootfs, "new.txt"), "new")
	if err := os.Remove(filepath.Join(rootfs, "etc", "os")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(rootfs, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(rootfs, "etc", "fresh"), "fresh")
	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ExportLCOWScratch(ctx, &buf, ls.ScratchVHDPath); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	for name, want := range map[string]string{"new.txt": "new", "etc/": "", "etc/.wh..wh..opq": "", "etc/fresh": "fresh"} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s: got %q (present %v), want %q; all: %q", name, v, ok, want, got)
		}
	}
	if _, ok := got["etc/os"]; ok {
		t.Errorf("etc/os exported though deleted")
	}

	// A disk no union used (a layer image) has no upper to export.
	if err := ExportLCOWScratch(ctx, io.Discard, ls.Layers[2].VHDPath); !errors.Is(err, ErrNoUpper) {
		t.Errorf("export of a layer disk: got %v, want ErrNoUpper", err)
	}
	checkNothingLeft(t, dir)
}
