package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/wclayer/cim"
)

// cimLayerFromTar writes a CIM layer at path from a Windows layer tar of the
// given files (a name starting ".wh." in its base name deletes).
func cimLayerFromTar(t *testing.T, path string, files map[string]string, parents []string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "Files/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)})
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := cim.NewCimLayerWriter(ctx, path, parents)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.DecodeTar(ctx, &buf, w.EntryWriter()); err != nil {
		w.Abort()
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMountWCOWLayersCIM stacks a CIM layer forked from a CIM base under a
// scratch folder: the union shows the child's merged tree (the base's file
// the child deleted stays hidden), takes writes into the scratch, and its
// closer ends the FUSE views. A second stack, left unreleased as by a crash,
// is cleaned by ReleaseCimFSHostLayers.
func TestMountWCOWLayersCIM(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	base, child := filepath.Join(dir, "base"), filepath.Join(dir, "child")
	cimLayerFromTar(t, base, map[string]string{"Files/a.txt": "a", "Files/gone.txt": "g"}, nil)
	cimLayerFromTar(t, child, map[string]string{"Files/b.txt": "b", "Files/.wh.gone.txt": ""}, []string{base})
	for round, release := range []string{"closer", "ReleaseCimFSHostLayers"} {
		scratch := filepath.Join(dir, "scratch"+release)
		if err := os.Mkdir(scratch, 0o755); err != nil {
			t.Fatal(err)
		}
		id := "cim-stack-" + release
		target, closer, err := MountWCOWLayers(ctx, id, []string{child, base, scratch}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"a.txt": "a", "b.txt": "b"} {
			if b, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(b) != want {
				t.Errorf("%s through the union: %q, %v", name, b, err)
			}
		}
		if _, err := os.Lstat(filepath.Join(target, "gone.txt")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("gone.txt: %v, want it hidden (the child CIM deleted it)", err)
		}
		write(t, filepath.Join(target, "new.txt"), "n")
		if _, err := os.Stat(filepath.Join(scratch, "Files", "new.txt")); err != nil {
			t.Errorf("the write did not land in the scratch: %v", err)
		}
		views := cimViews(t, id)
		if len(views) != 1 {
			t.Errorf("round %d: %d FUSE views for the stack, want 1 (the child's, which holds its base)", round, len(views))
		}
		if release == "closer" {
			if err := closer.Release(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := ReleaseCimFSHostLayers(ctx, scratch, id); err != nil {
			t.Fatal(err)
		}
		checkNothingLeft(t, dir)
		if v := cimViews(t, id); len(v) > 0 {
			t.Errorf("after %s: views left: %+v", release, v)
		}
		for _, v := range views {
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(v.PID) + "/stat"); err == nil && !exited(string(b)) {
				t.Errorf("after %s: helper %d still running", release, v.PID)
			}
		}
	}
}

// cimViews returns the FUSE mounts of CIM views whose record names the
// container.
func cimViews(t *testing.T, containerID string) []fusefs.Record {
	t.Helper()
	recs, err := fusefs.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []fusefs.Record
	for _, r := range recs {
		if r.Kind == "cim" && r.Params["containerID"] == containerID && strings.HasPrefix(r.ID, "wcow-") {
			out = append(out, r)
		}
	}
	return out
}
