package computestorage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/wclayer"
)

// filterStack imports a base layer and a child that deletes one base file,
// and returns the LayerData of both (child first) with the deleted name.
func filterStack(t *testing.T, dir string, ft FileSystemFilterType) (LayerData, string) {
	t.Helper()
	imp := func(path string, o sampletar.Options, parents []string) {
		var buf bytes.Buffer
		if err := sampletar.Write(&buf, o); err != nil {
			t.Fatal(err)
		}
		if _, err := ociwclayer.ImportLayerFromTar(context.Background(), &buf, path, parents); err != nil {
			t.Fatal(err)
		}
	}
	base, top := filepath.Join(dir, "base"), filepath.Join(dir, "top")
	imp(base, sampletar.Options{Seed: 11, Files: 12, Bytes: 32 << 10}, nil)
	topOpts := sampletar.Options{Seed: 12, Files: 6, Bytes: 16 << 10}
	probe := filepath.Join(dir, "probe")
	imp(probe, topOpts, []string{base})
	gone := ""
	filepath.WalkDir(filepath.Join(base, "Files"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && gone == "" {
			rel, _ := filepath.Rel(filepath.Join(base, "Files"), p)
			if _, err := os.Lstat(filepath.Join(probe, "Files", rel)); errors.Is(err, fs.ErrNotExist) {
				gone = rel
			}
		}
		return err
	})
	if gone == "" {
		t.Fatal("every base file is in the top layer")
	}
	topOpts.Whiteouts = []string{"Files/" + gone}
	imp(top, topOpts, []string{base})
	return LayerData{Layers: []Layer{{Path: top}, {Path: base}}, FilterType: ft}, gone
}

func needFilterState(t *testing.T) string {
	t.Helper()
	needDisks(t)
	state := t.TempDir()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", state)
	state = filepath.Join(state, "layers")
	return state
}

func checkFiltersGone(t *testing.T, dirs ...string) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if u := mountinfo.Under(ms, d); len(u) > 0 {
			t.Errorf("mounts left under %s: %+v", d, u)
		}
	}
	if as, _ := attach.List(); len(as) > 0 {
		t.Errorf("attachments left: %+v", as)
	}
}

func TestLayerStorageFilter(t *testing.T) {
	state := needFilterState(t)
	ctx := context.Background()
	dir := t.TempDir()
	data, gone := filterStack(t, dir, WCIFS)
	layer := filepath.Join(dir, "rw")
	if err := InitializeWritableLayer(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	var chain []string
	if b, err := os.ReadFile(filepath.Join(layer, "layerchain.json")); err != nil || json.Unmarshal(b, &chain) != nil || len(chain) != 2 || chain[0] != data.Layers[0].Path {
		t.Fatalf("layerchain.json %q %v", chain, err)
	}
	// Again: the disk stays, the chain is rewritten.
	if err := InitializeWritableLayer(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	bad := data
	bad.FilterType = "Bind"
	if err := AttachLayerStorageFilter(ctx, layer, bad); !errors.Is(err, ErrUnsupportedFilter) || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), layer) {
		t.Errorf("bad filter type: %v", err)
	}
	for round := 0; round < 2; round++ {
		if err := AttachLayerStorageFilter(ctx, layer, data); err != nil {
			t.Fatal(err)
		}
		union, err := wclayer.GetLayerMountPath(ctx, layer)
		if err != nil || !strings.HasPrefix(union, state) {
			t.Fatalf("mount path %q %v", union, err)
		}
		if _, err := os.Lstat(filepath.Join(union, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("deleted %s visible: %v", gone, err)
		}
		if round == 0 {
			if err := os.WriteFile(filepath.Join(union, "note.txt"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if _, err := os.Stat(filepath.Join(union, "note.txt")); err != nil {
			t.Errorf("file of the first round: %v", err)
		}
		if err := DetachLayerStorageFilter(ctx, layer); err != nil {
			t.Fatal(err)
		}
	}
	if err := DetachLayerStorageFilter(ctx, layer); !errors.Is(err, wclayer.ErrNotPrepared) {
		t.Errorf("extra detach: %v", err)
	}
	checkFiltersGone(t, state, layer)
}

func TestOverlayFilter(t *testing.T) {
	state := needFilterState(t)
	ctx := context.Background()
	dir := t.TempDir()
	data, gone := filterStack(t, dir, UnionFS)
	layer := filepath.Join(dir, "rw")
	if err := InitializeWritableLayer(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	d, err := OpenVirtualDisk(filepath.Join(layer, wclayer.ScratchDisk), OpenVirtualDiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vol, err := GetLayerVhdMountPath(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, ft := range []FileSystemFilterType{"", "Bind"} {
		bad := data
		bad.FilterType = ft
		if err := AttachOverlayFilter(ctx, vol, bad); !errors.Is(err, ErrUnsupportedFilter) || !strings.Contains(err.Error(), vol) {
			t.Errorf("filter type %q: %v", ft, err)
		}
	}
	if ms, _ := mountinfo.Lookup(vol); len(ms) != 1 {
		t.Fatalf("a refused filter changed the mounts: %+v", ms)
	}
	for range 2 {
		if err := AttachOverlayFilter(ctx, vol, data); err != nil {
			t.Fatal(err)
		}
	}
	if ms, _ := mountinfo.Lookup(vol); len(ms) != 2 || ms[1].FSType != "overlay" {
		t.Fatalf("mounts at the volume: %+v", ms)
	}
	top := data.Layers[0].Path
	es, err := os.ReadDir(filepath.Join(top, "Files"))
	if err != nil || len(es) == 0 {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(vol, es[0].Name())); err != nil {
		t.Errorf("the volume does not show the top layer's %s: %v", es[0].Name(), err)
	}
	if _, err := os.Lstat(filepath.Join(vol, gone)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted %s visible: %v", gone, err)
	}
	if err := os.WriteFile(filepath.Join(vol, "new.txt"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := DetachOverlayFilter(ctx, vol, UnionFS); err != nil {
		t.Fatal(err)
	}
	if ms, _ := mountinfo.Lookup(vol); len(ms) != 2 {
		t.Errorf("first detach of two removed the filter: %+v", ms)
	}
	if err := DetachOverlayFilter(ctx, vol, UnionFS); err != nil {
		t.Fatal(err)
	}
	// The volume itself again, the write in its Files/.
	if b, err := os.ReadFile(filepath.Join(vol, "Files", "new.txt")); err != nil || string(b) != "y" {
		t.Errorf("write through the filter: %q %v", b, err)
	}
	if err := DetachOverlayFilter(ctx, vol, UnionFS); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("extra detach: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	checkFiltersGone(t, state, vol)
	if es, _ := os.ReadDir(state); len(es) > 0 {
		t.Errorf("filter state left: %d entries", len(es))
	}
}

func TestInitializeWritableLayerErrors(t *testing.T) {
	needFilterState(t)
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	layer := filepath.Join(dir, "rw")
	err := InitializeWritableLayer(ctx, layer, LayerData{Layers: []Layer{{Path: missing}}})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing parent: %v", err)
	}
	if err := InitializeWritableLayer(ctx, layer, LayerData{FilterType: "Nope"}); !errors.Is(err, ErrUnsupportedFilter) {
		t.Errorf("bad filter: %v", err)
	}
	if _, err := os.Lstat(layer); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused calls made the layer: %v", err)
	}
}

// TestWritableLayerFromTemplate follows containerd's flow for a process
// container: the base layer's template disks (wclayer.ProcessBaseLayer), a
// byte copy of blank.vhdx as the container's sandbox.vhdx, then
// InitializeWritableLayer, which keeps that disk, and the storage filter,
// which mounts it through its differencing chain.
func TestWritableLayerFromTemplate(t *testing.T) {
	state := needFilterState(t)
	ctx := context.Background()
	dir := t.TempDir()
	data, gone := filterStack(t, dir, WCIFS)
	base := data.Layers[1].Path
	// The stack's base is no Windows OS image: the disks are made, and the
	// error says the hives are missing.
	if err := wclayer.ProcessBaseLayer(ctx, base); err != nil && !errors.Is(err, wclayer.ErrNoHives) {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "ctr")
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(base, ContainerScratchTemplate))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, wclayer.ScratchDisk), tmpl, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := InitializeWritableLayer(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(layer, wclayer.ScratchDisk)); !bytes.Equal(b, tmpl) {
		t.Fatal("InitializeWritableLayer replaced the copied template")
	}
	if err := AttachLayerStorageFilter(ctx, layer, data); err != nil {
		t.Fatal(err)
	}
	union, err := wclayer.GetLayerMountPath(ctx, layer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(union, gone)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted %s visible: %v", gone, err)
	}
	if err := os.WriteFile(filepath.Join(union, "c.txt"), []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := DetachLayerStorageFilter(ctx, layer); err != nil {
		t.Fatal(err)
	}
	checkFiltersGone(t, state, layer)
	// The write went into the container's differencing disk, not the template.
	if b, _ := os.ReadFile(filepath.Join(base, ContainerScratchTemplate)); !bytes.Equal(b, tmpl) {
		t.Error("the template changed")
	}
}
