package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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

	"github.com/hostcompute/hostcompute/internal/registrytest"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// folderLayers keeps layers as folders under dir, one per chainID: Windows layers
// through pkg/ociwclayer (lossless), Linux layers applied with pkg/ocilayer onto an
// empty directory.
type folderLayers struct{ dir string }

func (f *folderLayers) path(key string) string {
	return filepath.Join(f.dir, strings.ReplaceAll(key, ":", "-"))
}

func (f *folderLayers) HasLayer(ctx context.Context, key string) (bool, error) {
	_, err := os.Stat(f.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (f *folderLayers) parents(parent string) ([]string, error) {
	if parent == "" {
		return nil, nil
	}
	p := f.path(parent)
	var chain []string
	b, err := os.ReadFile(filepath.Join(p, "layerchain.json"))
	if err == nil {
		if err := json.Unmarshal(b, &chain); err != nil {
			return nil, err
		}
	}
	return append([]string{p}, chain...), nil
}

func (f *folderLayers) ImportLayer(ctx context.Context, key, parent, osName, diffID string, r io.Reader) error {
	if osName == "windows" {
		parents, err := f.parents(parent)
		if err != nil {
			return err
		}
		_, err = ociwclayer.ImportLayerFromTar(ctx, r, f.path(key), parents)
		return err
	}
	stage := f.path(key) + ".stage"
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	if _, err := ocilayer.Apply(ctx, stage, r); err != nil {
		os.RemoveAll(stage)
		return err
	}
	return os.Rename(stage, f.path(key))
}

func (f *folderLayers) ExportLayer(ctx context.Context, key string, w io.Writer) error {
	if ok, _ := winlayer.Exists(f.path(key)); ok {
		return ociwclayer.ExportLayerToTar(ctx, w, f.path(key), nil)
	}
	return fmt.Errorf("export of a Linux layer: %w", errors.ErrUnsupported)
}

func (f *folderLayers) LayerPath(ctx context.Context, key string) (string, error) {
	return f.path(key), nil
}

func (f *folderLayers) RemoveLayer(ctx context.Context, key string) error {
	return os.RemoveAll(f.path(key))
}

func (f *folderLayers) keys(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(f.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// newStore opens an image store in a new temporary directory.
func newStore(t *testing.T) (*Store, *folderLayers) {
	t.Helper()
	dir := t.TempDir()
	l := &folderLayers{dir: filepath.Join(dir, "layers")}
	s, err := Open(filepath.Join(dir, "root"), l)
	if err != nil {
		t.Fatal(err)
	}
	return s, l
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
		out = append(out, fmt.Sprintf("%s %d", rel, info.Size()))
		return nil
	})
	sort.Strings(out)
	return out
}
