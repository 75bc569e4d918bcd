package layers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/wclayer"
)

// importLayer writes a layer folder from a generated Windows layer tar.
func importLayer(t *testing.T, path string, o sampletar.Options, parents []string) {
	t.Helper()
	var buf bytes.Buffer
	if err := sampletar.Write(&buf, o); err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.ImportLayerFromTar(context.Background(), &buf, path, parents); err != nil {
		t.Fatal(err)
	}
}

// regularFiles lists the regular files under dir, relative to it.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMountWCOWLayers(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	base, top, scratch := filepath.Join(dir, "base"), filepath.Join(dir, "top"), filepath.Join(dir, "scratch")
	importLayer(t, base, sampletar.Options{Seed: 1, Files: 20, Bytes: 64 << 10}, nil)
	baseFiles := regularFiles(t, filepath.Join(base, "Files"))
	// The generator reuses names across seeds: delete a base file the top layer
	// does not add again, found by importing the top layer once without deletions.
	topOpts := sampletar.Options{Seed: 2, Files: 10, Bytes: 64 << 10}
	probe := filepath.Join(dir, "probe")
	importLayer(t, probe, topOpts, []string{base})
	inTop := map[string]bool{}
	for _, f := range regularFiles(t, filepath.Join(probe, "Files")) {
		inTop[f] = true
	}
	gone := ""
	for _, f := range baseFiles {
		if !inTop[f] && gone == "" {
			gone = f
		}
	}
	if gone == "" {
		t.Fatal("every base file is in the top layer")
	}
	topOpts.Whiteouts = []string{"Files/" + gone}
	importLayer(t, top, topOpts, []string{base})
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}

	target, closer, err := MountWCOWLayers(ctx, "w1", []string{top, base, scratch}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if target != filepath.Join(scratch, WCOWMountDir) {
		t.Errorf("mounted at %s, want %s/mount", target, scratch)
	}
	if _, err := os.Lstat(filepath.Join(target, gone)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: got %v, want it hidden by the top layer's tombstone", gone, err)
	}
	topFiles := regularFiles(t, filepath.Join(top, "Files"))
	for _, f := range topFiles {
		want, _ := os.ReadFile(filepath.Join(top, "Files", f))
		if got, err := os.ReadFile(filepath.Join(target, f)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not the top layer's content (%v)", f, err)
		}
	}
	for _, f := range baseFiles {
		if _, err := os.Stat(filepath.Join(target, f)); err != nil && f != gone {
			t.Errorf("base file %s missing from the union: %v", f, err)
		}
	}
	write(t, filepath.Join(target, "new.txt"), "n")
	if _, err := os.Stat(filepath.Join(scratch, "Files", "new.txt")); err != nil {
		t.Errorf("the write did not land in the scratch's Files: %v", err)
	}

	// Job containers: the volume at a user path, bind-mounted.
	host := filepath.Join(dir, "host", "vol")
	if err := MountSandboxVolume(ctx, host, target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(host, "new.txt")); err != nil {
		t.Errorf("volume at %s: %v", host, err)
	}
	if err := RemoveSandboxMountPoint(ctx, host); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(host); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left: %v", host, err)
	}

	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mount point %s left: %v", target, err)
	}
}

func TestMountWCOWLayersSandboxDisk(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	base, scratch := filepath.Join(dir, "base"), filepath.Join(dir, "scratch")
	importLayer(t, base, sampletar.Options{Seed: 3, Files: 5, Bytes: 8 << 10}, nil)
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := host.CreateScratchVHD(ctx, filepath.Join(scratch, SandboxDisk), 32<<20); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(dir, "vol")
	target, closer, err := MountWCOWLayers(ctx, "w2", []string{base, scratch}, vol, nil)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(target, "x"), "x")
	if m, _ := mountinfo.Lookup(filepath.Join(scratch, SandboxMountDir)); len(m) != 1 || m[0].FSType != "ext4" {
		t.Errorf("sandbox disk not mounted: %+v", m)
	}
	if _, err := os.Stat(filepath.Join(scratch, SandboxMountDir, "Files", "x")); err != nil {
		t.Errorf("the write did not land on the sandbox disk: %v", err)
	}
	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
}

func TestMountWCOWLayersBadInput(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	notLayer := filepath.Join(dir, "empty")
	scratch := filepath.Join(dir, "scratch")
	os.Mkdir(notLayer, 0o755)
	os.Mkdir(scratch, 0o755)
	if _, _, err := MountWCOWLayers(ctx, "w", []string{notLayer, scratch}, "", nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), notLayer) {
		t.Errorf("folder without Files: got %v", err)
	}
	if _, _, err := MountWCOWLayers(ctx, "w", []string{scratch}, "", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("one folder: got %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(filepath.Join(bad, "Files"), 0o755)
	write(t, filepath.Join(bad, "tombstones.txt"), "\uFEFFVersion 1.0\n\\..\\..\\etc\\passwd\n")
	if _, _, err := MountWCOWLayers(ctx, "w", []string{bad, scratch}, "", nil); !errors.Is(err, ErrBadTombstones) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("escaping tombstone: got %v", err)
	}
	// 300 layers with deletions need 600 lower directories: over the limit.
	var many []string
	for i := range 300 {
		l := filepath.Join(dir, "many", fmt.Sprint(i))
		os.MkdirAll(filepath.Join(l, "Files"), 0o755)
		write(t, filepath.Join(l, "tombstones.txt"), "\uFEFFVersion 1.0\n\\gone\n")
		many = append(many, l)
	}
	if _, _, err := MountWCOWLayers(ctx, "w", append(many, scratch), "", nil); !errors.Is(err, ErrTooManyLayers) || !strings.Contains(err.Error(), "600") {
		t.Errorf("300 layers with deletions: got %v, want ErrTooManyLayers counting 600 lower directories", err)
	}
	checkNothingLeft(t, dir)
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("left in the scratch: %v", ents)
	}
}

func TestSchemaLayers(t *testing.T) {
	ctx := context.Background()
	paths := []string{"/layers/abc", "/layers/def"}
	got, err := GetHCSLayers(ctx, nil, paths)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ToHostHcsSchemaLayers(ctx, "c", paths)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		id, _ := wclayer.LayerID(ctx, p)
		if got[i].ID != id.String() || got[i].Path != p || host[i] != got[i] {
			t.Errorf("layer %d: got %+v and %+v, want ID %s path %s", i, got[i], host[i], id, p)
		}
	}
	if _, err := GetHCSLayers(ctx, &UtilityVM{}, paths); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("with a VM: got %v", err)
	}
}
