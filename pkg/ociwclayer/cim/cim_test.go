package cim

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

func genTar(t *testing.T, o sampletar.Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := sampletar.Write(&b, o); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// folderExport imports a tar into a folder-form layer and exports it again: the
// reference bytes a CIM layer's export must equal.
func folderExport(t *testing.T, tarb []byte, dir, name string, parents []string) []byte {
	t.Helper()
	ctx := context.Background()
	p := filepath.Join(dir, name)
	if _, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(tarb), p, parents, nil...); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ociwclayer.ExportLayerToTar(ctx, &out, p, parents); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func cimExport(t *testing.T, tarb []byte, dir, name string, parents []string) []byte {
	t.Helper()
	ctx := context.Background()
	p := filepath.Join(dir, name)
	if _, err := ImportCimLayerFromTar(ctx, bytes.NewReader(tarb), p, parents); err != nil && !(len(parents) > 0 && errors.Is(err, wcim.ErrHiveMergeUnsupported)) {
		t.Fatal(err)
	}
	im, err := wcim.OpenLayer(p)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	var out bytes.Buffer
	if err := ExportCimLayerToTar(ctx, &out, p, parents); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func tarNames(t *testing.T, b []byte) []string {
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err != nil {
			return out
		}
		out = append(out, h.Name)
	}
}

func TestTarRoundTrip(t *testing.T) {
	fdir, cdir := t.TempDir(), t.TempDir()
	base := genTar(t, sampletar.Options{Seed: 11, Files: 300, Bytes: 4 << 20, UtilityVM: true, Hives: true, LargeFiles: 2, Unicode: true})
	want := folderExport(t, base, fdir, "base", nil)
	got := cimExport(t, base, cdir, "base", nil)
	if !bytes.Equal(want, got) {
		i := firstDiff(want, got)
		t.Fatalf("base: CIM export differs from folder export at byte %d of %d/%d\nfolder names: %v\ncim names: %v", i, len(want), len(got), tarNames(t, want)[:5], tarNames(t, got)[:5])
	}
	if !bytes.Equal(want, base) {
		t.Logf("note: folder export is not byte-identical to sampletar's input (%d vs %d bytes)", len(want), len(base))
	}
	// A file only the base has (the child's own files fill d0000 and d0001).
	gone := ""
	for _, n := range tarNames(t, base) {
		if strings.HasPrefix(n, "Files/Windows/System32/d0003/") && strings.HasSuffix(n, ".dll") {
			gone = n
			break
		}
	}
	if gone == "" {
		t.Fatal("no base-only file to remove")
	}
	child := genTar(t, sampletar.Options{Seed: 12, Files: 100, Bytes: 1 << 20, Hives: true, Unicode: true,
		Whiteouts: []string{"Files/Windows/System32/d0000/f00003.dll", gone, "Files/gone/dir"}})
	want = folderExport(t, child, fdir, "child", []string{filepath.Join(fdir, "base")})
	got = cimExport(t, child, cdir, "child", []string{filepath.Join(cdir, "base")})
	if !bytes.Equal(want, got) {
		t.Fatalf("child: CIM export differs from folder export at byte %d of %d/%d", firstDiff(want, got), len(want), len(got))
	}
	// The child shows the union: inherited files, its own, minus removals.
	im, err := wcim.OpenLayer(filepath.Join(cdir, "child"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if _, err := im.Lookup(gone); !errors.Is(err, cimfs.ErrNotFound) {
		t.Errorf("removed file %s visible: %v", gone, err)
	}
	if _, err := im.Lookup("Files/Windows/System32/d0000/f00003.dll"); err != nil {
		t.Errorf("file removed and added again: %v", err)
	}
	baseIm, err := wcim.OpenLayer(filepath.Join(cdir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	defer baseIm.Close()
	if _, err := baseIm.Lookup(gone); err != nil {
		t.Errorf("base lost %s: %v", gone, err)
	}
	if im.Parents() != 1 {
		t.Errorf("parents %d", im.Parents())
	}
}

func TestImportFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	tarb := genTar(t, sampletar.Options{Seed: 5, Files: 50, Bytes: 1 << 20})
	_, err := ImportCimLayerFromTar(context.Background(), io.LimitReader(bytes.NewReader(tarb), int64(len(tarb)/2)), filepath.Join(dir, "l"), nil)
	if err == nil {
		t.Fatal("truncated tar imported")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, wcim.CimLayersDir))
	if len(ents) != 0 {
		t.Errorf("failed import left %d files in cim-layers", len(ents))
	}
	if _, err := os.Stat(filepath.Join(dir, "l")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed import left the layer folder: %v", err)
	}
}

func TestFolderConversions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tarb := genTar(t, sampletar.Options{Seed: 21, Files: 120, Bytes: 2 << 20, UtilityVM: true, Unicode: true})
	folder := filepath.Join(dir, "folder")
	if _, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(tarb), folder, nil); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "layers", "l1")
	os.MkdirAll(filepath.Dir(layer), 0o755)
	if err := wcim.ImportLayerFolder(ctx, folder, layer, nil); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back")
	if err := wcim.ExportLayerFolder(ctx, layer, back, nil); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := ociwclayer.ExportLayerToTar(ctx, &a, folder, nil); err != nil {
		t.Fatal(err)
	}
	if err := ociwclayer.ExportLayerToTar(ctx, &b, back, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("folder → CIM → folder changed the layer (first difference at %d)", firstDiff(a.Bytes(), b.Bytes()))
	}
	if err := wcim.DestroyCimLayer(ctx, layer); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "layers", wcim.CimLayersDir)); len(ents) != 0 {
		t.Errorf("destroy left %d files", len(ents))
	}
}

// TestLinkToParent: a child layer links to a file of its parent. The CIM layer
// exports what the folder form exports.
func TestLinkToParent(t *testing.T) {
	fdir, cdir := t.TempDir(), t.TempDir()
	base := genTar(t, sampletar.Options{Seed: 31, Files: 20, Bytes: 1 << 16})
	target := ""
	for _, n := range tarNames(t, base) {
		if strings.HasSuffix(n, ".dll") {
			target = n
			break
		}
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "Files/linked.dll", Typeflag: tar.TypeLink, Linkname: target, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"MSWINDOWS.fileattr": "32"}})
	tw.Close()
	folderExport(t, base, fdir, "base", nil)
	cimExport(t, base, cdir, "base", nil)
	want := folderExport(t, b.Bytes(), fdir, "child", []string{filepath.Join(fdir, "base")})
	got := cimExport(t, b.Bytes(), cdir, "child", []string{filepath.Join(cdir, "base")})
	if !bytes.Equal(want, got) {
		t.Fatalf("CIM export %v differs from folder export %v", tarNames(t, got), tarNames(t, want))
	}
	// Issue 10: the child's name is a hard link to the parent's file in the CIM too
	// (one file ID), and its export is a link to the parent's name, not a copy.
	im, err := wcim.OpenLayer(filepath.Join(cdir, "child"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	a, err1 := im.Stat("Files/linked.dll")
	b2, err2 := im.Stat(target)
	if err1 != nil || err2 != nil || a.ID != b2.ID {
		t.Errorf("Files/linked.dll and %s: IDs %v, %v (%v, %v); want one file", target, a, b2, err1, err2)
	}
	tr := tar.NewReader(bytes.NewReader(got))
	h, err := tr.Next()
	if err != nil || h.Name != "Files/linked.dll" || h.Typeflag != tar.TypeLink || h.Linkname != target {
		t.Errorf("CIM export starts with %+v, %v; want a link Files/linked.dll to %s", h, err, target)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("CIM export has more than the link: %v", err)
	}
}
