package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/registrytest"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/store"
)

// newStore opens a layer store and the image store beside it in a new temporary
// directory, closed at the test's end. Linux layers are applied through an overlay
// of their parents, so the tests need root.
func newStore(t *testing.T) (*Store, *layerStore) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("unpacking Linux layers mounts overlays: needs root")
	}
	ls, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Close() })
	s, err := OpenStore(ls)
	if err != nil {
		t.Fatal(err)
	}
	return s, &layerStore{ls}
}

type layerStore struct{ *store.Store }

// keys lists the store's layers.
func (l *layerStore) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	if err := l.Walk(context.Background(), func(ctx context.Context, i store.Info) error {
		out = append(out, i.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// mountAll performs the store's mounts at target.
func mountAll(t *testing.T, mounts []store.Mount, target string) {
	t.Helper()
	for _, m := range mounts {
		var flags uintptr
		data := strings.Join(m.Options, ",")
		if m.Type == "bind" {
			flags = unix.MS_BIND | unix.MS_REC
			if slices.Contains(m.Options, "ro") {
				flags |= unix.MS_RDONLY
			}
			data = ""
		}
		if err := unix.Mount(m.Source, target, m.Type, flags, data); err != nil {
			t.Fatalf("mount %v: %v", m, err)
		}
	}
}

func unmount(t *testing.T, target string) {
	t.Helper()
	if err := unix.Unmount(target, 0); err != nil {
		t.Errorf("unmount %s: %v", target, err)
	}
}

// viewRootfs mounts a read-only view of the layer key and returns its path,
// unmounted and removed at the test's end.
func (l *layerStore) viewRootfs(t *testing.T, key string) string {
	t.Helper()
	ctx := context.Background()
	view := "test-view-" + strings.TrimPrefix(key, "sha256:")[:12]
	mounts, err := l.View(ctx, view, key)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	mountAll(t, mounts, target)
	t.Cleanup(func() {
		unmount(t, target)
		if err := l.Remove(ctx, view); err != nil {
			t.Errorf("remove view: %v", err)
		}
	})
	return target
}

// startRegistry runs a real registry for the test, stopped at its end.
func startRegistry(t *testing.T) *registrytest.Registry {
	t.Helper()
	if _, err := exec.LookPath(registrytest.Binary); err != nil {
		t.Skip(registrytest.ErrNotInstalled)
	}
	r, err := registrytest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stopping the registry: %v", err)
		}
	})
	return r
}

// windowsLayers generates a base layer (UtilityVM, Hives) and a child (with
// whiteouts), every kind of Windows metadata included.
func windowsLayers(t *testing.T) [][]byte {
	t.Helper()
	var base, child bytes.Buffer
	if err := sampletar.Write(&base, sampletar.Options{Seed: 11, Files: 120, Bytes: 1 << 20, UtilityVM: true, Hives: true, Unicode: true, LargeFiles: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sampletar.Write(&child, sampletar.Options{Seed: 12, Files: 40, Bytes: 256 << 10, Hives: true,
		Whiteouts: []string{"Files/Windows/System32/d0000/f00003.dll"}}); err != nil {
		t.Fatal(err)
	}
	return [][]byte{base.Bytes(), child.Bytes()}
}

type tent struct {
	hdr  tar.Header
	body string
}

var epoch = time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC)

func tfile(name, body string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}, body: body}
}
func tdir(name string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch}}
}
func tlink(name, target string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func mkTar(t *testing.T, ents ...tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// linuxLayers are three small OCI layers: a base, one that changes and removes
// files (a whiteout), one that makes a directory opaque.
func linuxLayers(t *testing.T) [][]byte {
	return [][]byte{
		mkTar(t, tdir("bin"), tfile("bin/sh", "#!/bin/true\n"), tdir("etc"), tfile("etc/os-release", "ID=test\n"),
			tdir("var"), tdir("var/cache"), tfile("var/cache/a", "aaa"), tlink("etc/link", "os-release")),
		mkTar(t, tdir("etc"), tfile("etc/os-release", "ID=test2\n"), tfile("etc/.wh.link", ""), tfile("etc/new", strings.Repeat("n", 100000))),
		mkTar(t, tdir("var/cache"), tfile("var/cache/.wh..wh..opq", ""), tfile("var/cache/b", "bbb")),
	}
}

// buildImage makes an image of the uncompressed layer tars with
// go-containerregistry, as an independent producer would.
func buildImage(t *testing.T, p v1.Platform, layers [][]byte, mt types.MediaType) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, mt)
	if mt == types.OCIManifestSchema1 {
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	} else {
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	}
	for _, b := range layers {
		lmt := types.OCILayer
		if mt == types.DockerManifestSchema2 {
			lmt = types.DockerLayer
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(lmt))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: lmt}); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.OSVersion, cf.Variant = p.OS, p.Architecture, p.OSVersion, p.Variant
	cf.Created = v1.Time{Time: epoch}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushImage(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// snapshot lists every file under dir with its size, to tell a store left as it was.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "content-ingest") || rel == "content.lock" {
			return nil
		}
		info, _ := d.Info()
		if rel == "meta.db" { // bbolt grows its file; the layers are compared by key
			out = append(out, rel)
			return nil
		}
		out = append(out, fmt.Sprintf("%s %d", rel, info.Size()))
		return nil
	})
	sort.Strings(out)
	return out
}
