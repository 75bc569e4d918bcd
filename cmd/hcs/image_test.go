package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/image"
	"github.com/hostcompute/hostcompute/internal/registrytest"
)

func testRegistry(t *testing.T) *registrytest.Registry {
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

// windowsImage is a one-layer Windows image of the sample layer tar.
func windowsImage(t *testing.T) v1.Image {
	t.Helper()
	b := sampleTar(t)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.OSVersion = "windows", "amd64", "10.0.20348.2113"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageCommands(t *testing.T) {
	reg := testRegistry(t)
	img := windowsImage(t)
	ref := reg.Host + "/win/sample:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	root := filepath.Join(t.TempDir(), "root")

	res := hcs(t, nil, "image", "--root", root, "pull", "--platform", "windows/amd64", "-o", "json", ref)
	wantCode(t, res, exitOK)
	var sum image.Summary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
		t.Fatalf("pull -o json: %v: %s", err, res.stdout)
	}
	if sum.Digest != want.String() || len(sum.Layers) != 1 || !sum.Layers[0].Unpacked {
		t.Fatalf("pull result %+v", sum)
	}

	res = hcs(t, nil, "image", "--root", root, "ls", "-o", "json")
	wantCode(t, res, exitOK)
	var list []image.Summary
	json.Unmarshal([]byte(res.stdout), &list)
	if len(list) != 1 || list[0].Name != ref {
		t.Fatalf("ls: %s", res.stdout)
	}
	wantCode(t, hcs(t, nil, "image", "--root", root, "tag", ref, "local/sample:copy"), exitOK)
	res = hcs(t, nil, "image", "--root", root, "inspect", "-o", "json", "local/sample:copy")
	wantCode(t, res, exitOK)
	if !strings.Contains(res.stdout, sum.Layers[0].ChainID) {
		t.Errorf("inspect lacks the chainID: %s", res.stdout)
	}

	dir := filepath.Join(t.TempDir(), "oci")
	wantCode(t, hcs(t, nil, "image", "--root", root, "save", ref, "oci:"+dir+":sample"), exitOK)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, _ := p.ImageIndex()
	im, _ := ii.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want {
		t.Errorf("saved layout index %+v", im)
	}
	arch := filepath.Join(t.TempDir(), "img.tar")
	wantCode(t, hcs(t, nil, "image", "--root", root, "save", ref, "docker-archive:"+arch+":local/sample:archived"), exitOK)

	ref2 := reg.Host + "/win/pushed:1"
	wantCode(t, hcs(t, nil, "image", "--root", root, "push", ref, ref2), exitOK)
	r2, _ := name.ParseReference(ref2)
	if d, err := remote.Head(r2); err != nil || d.Digest != want {
		t.Fatalf("pushed %v (%v), want %s", d, err, want)
	}

	root2 := filepath.Join(t.TempDir(), "root2")
	res = hcs(t, nil, "image", "--root", root2, "load", "-o", "json", "docker-archive:"+arch)
	wantCode(t, res, exitOK)
	if !strings.Contains(res.stdout, `"name":"local/sample:archived"`) {
		t.Errorf("load of the archive: %s", res.stdout)
	}

	wantCode(t, hcs(t, nil, "image", "--root", root, "rm", ref, "local/sample:copy"), exitOK)
	wantCode(t, hcs(t, nil, "image", "--root", root, "inspect", ref), exitNotFound)
	wantCode(t, hcs(t, nil, "image", "--root", root, "pull", reg.Host+"/win/none:1"), exitNotFound)
	wantCode(t, hcs(t, nil, "image", "--root", root, "pull", "--platform", "nope/x/y/z", ref), exitUsage)
}

func TestImageBuildAndConvert(t *testing.T) {
	reg := testRegistry(t)
	img := windowsImage(t)
	ref := reg.Host + "/win/base:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	wantCode(t, hcs(t, nil, "image", "--root", root, "pull", "-q", "--platform", "windows/amd64", ref), exitOK)

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
	res := hcs(t, nil, "image", "--root", root, "append", "--base", ref, "--layer", dir, "-t", "built:1", "-o", "json")
	wantCode(t, res, exitOK)
	var built image.Summary
	if err := json.Unmarshal([]byte(res.stdout), &built); err != nil || len(built.Layers) != 2 {
		t.Fatalf("append: %v: %s", err, res.stdout)
	}
	res = hcs(t, nil, "image", "--root", root, "convert", "built:1", "--to", "cim", "-o", "json")
	wantCode(t, res, exitOK)
	var rep image.ConvertReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil || len(rep.Layers) != 2 {
		t.Fatalf("convert: %v: %s", err, res.stdout)
	}
	for _, l := range rep.Layers {
		if _, err := os.Stat(l.File); err != nil || l.SHA256 == "" {
			t.Errorf("converted layer %+v: %v", l, err)
		}
	}
	wantCode(t, hcs(t, nil, "image", "--root", root, "convert", "built:1", "--to", "ext4"), exitFailure)
	wantCode(t, hcs(t, nil, "image", "--root", root, "convert", "built:1", "--to", "nope"), exitUsage)
	wantCode(t, hcs(t, nil, "image", "--root", root, "push", "-q", "built:1", reg.Host+"/win/built:1"), exitOK)
}
