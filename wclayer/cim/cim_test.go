package cim

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

func TestPaths(t *testing.T) {
	l := "/var/lib/snapshots/17"
	if GetCimDirFromLayer(l) != "/var/lib/snapshots/cim-layers" || GetCimNameFromLayer(l) != "17.cim" ||
		GetCimPathFromLayer(l+"/") != "/var/lib/snapshots/cim-layers/17.cim" {
		t.Errorf("%s %s %s", GetCimDirFromLayer(l), GetCimNameFromLayer(l), GetCimPathFromLayer(l+"/"))
	}
}

func TestLayerWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base, child := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	sd := []byte{1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	ea, _ := winfile.EncodeExtendedAttributes([]winfile.ExtendedAttribute{{Name: "X", Value: []byte("1")}})
	rp, _ := winfile.NewLinkReparsePoint(`C:\target`, true).Encode()

	w, err := NewCimLayerWriter(ctx, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if IsCimLayer(base) {
		t.Error("layer visible before Close")
	}
	dirInfo := &winfile.BasicInfo{LastWriteTime: 1e17, FileAttributes: winfile.AttrDirectory}
	fileInfo := &winfile.BasicInfo{LastWriteTime: 1e17, FileAttributes: winfile.AttrArchive}
	steps := []error{
		w.Add(`Files`, dirInfo, 0, sd, nil, nil),
		w.Add(`Files\a.txt`, fileInfo, 5, sd, ea, nil),
	}
	w.Write([]byte("hello"))
	steps = append(steps,
		w.AddAlternateStream(`Files\a.txt:s1:$DATA`, 3),
	)
	w.Write([]byte("abc"))
	steps = append(steps,
		w.Add(`Files\junction`, &winfile.BasicInfo{FileAttributes: winfile.AttrDirectory | winfile.AttrReparsePoint}, 0, sd, nil, rp),
		w.AddLink(`Files\b.txt`, `Files\a.txt`),
		w.Close(ctx),
	)
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if !IsCimLayer(base) {
		t.Fatal("no CIM after Close")
	}
	w2, err := NewCimLayerWriter(ctx, child, []string{base})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Remove(`Files\b.txt`); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	im, err := OpenLayer(child)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.Verify(); err != nil {
		t.Fatal(err)
	}
	f, err := im.Open(`Files\A.TXT:S1`)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(f); string(b) != "abc" {
		t.Errorf("stream %q", b)
	}
	if _, err := im.Lookup(`Files\b.txt`); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed link: %v", err)
	}
	fi, err := im.Stat(`Files\junction`)
	if err != nil || !fi.IsDir() || fi.ReparseTag != winfile.ReparseTagMountPoint {
		t.Errorf("junction: %+v %v", fi, err)
	}
	// Writing an existing layer fails; a writer whose Close fails leaves nothing.
	if _, err := NewCimLayerWriter(ctx, base, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("existing layer: %v", err)
	}
	w3, err := NewCimLayerWriter(ctx, filepath.Join(dir, "3"), []string{child})
	if err != nil {
		t.Fatal(err)
	}
	w3.Add(`Files\c`, fileInfo, 10, nil, nil, nil)
	w3.Write([]byte("short"))
	if err := w3.Close(ctx); err == nil {
		t.Error("short file committed")
	}
	if IsCimLayer(filepath.Join(dir, "3")) {
		t.Error("failed layer visible")
	}
	if _, err := os.Stat(filepath.Join(dir, "3")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("failed layer left its folder")
	}
	ents, _ := os.ReadDir(GetCimDirFromLayer(base))
	if len(ents) != 2*7 {
		t.Errorf("cim-layers has %d files, want 14", len(ents))
	}
	if err := DestroyCimLayer(ctx, child); err != nil {
		t.Fatal(err)
	}
	if err := DestroyCimLayer(ctx, child); err != nil {
		t.Fatal(err)
	}
	if _, err := cimfs.Open(GetCimPathFromLayer(base)); err != nil {
		t.Errorf("base damaged by destroying the child: %v", err)
	}
}
