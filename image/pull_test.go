package image

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/internal/registrytest"
)

var (
	winPlatform   = v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.20348.2113"}
	linuxPlatform = v1.Platform{OS: "linux", Architecture: "amd64"}
)

// TestWindowsRoundTrip: push (by an independent producer) → pull → export gives
// every layer back byte for byte; push from the store → pull into another store →
// the same manifest digest and the same layer bytes.
func TestWindowsRoundTrip(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	layers := windowsLayers(t)
	img := buildImage(t, winPlatform, layers, types.DockerManifestSchema2)
	ref := reg.Host + "/win/base:ltsc2022"
	want := pushImage(t, ref, img)

	s, _ := newStore(t)
	sum, err := s.Pull(ctx, ref, WithPlatform(v1.Platform{OS: "windows", Architecture: "amd64"}))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Digest != want.String() || len(sum.Layers) != 2 {
		t.Fatalf("pulled %s with %d layers, want %s with 2", sum.Digest, len(sum.Layers), want)
	}
	for i := range layers {
		var buf bytes.Buffer
		if err := s.ExportLayer(ctx, ref, i, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), layers[i]) {
			t.Fatalf("layer %d exported from the store differs from the layer pushed (%d bytes, want %d)", i, buf.Len(), len(layers[i]))
		}
	}

	// Push from the store, pull into a fresh store, export again.
	ref2 := reg.Host + "/win/copy:1"
	if _, err := s.Push(ctx, ref, ref2); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Head(mustRef(t, ref2))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want {
		t.Fatalf("pushed manifest digest %s, want %s", got.Digest, want)
	}
	s2, _ := newStore(t)
	if _, err := s2.Pull(ctx, ref2, WithPlatform(winPlatform)); err != nil {
		t.Fatal(err)
	}
	for i := range layers {
		var buf bytes.Buffer
		if err := s2.ExportLayer(ctx, ref2, i, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), layers[i]) {
			t.Fatalf("second store: layer %d differs", i)
		}
	}
}

// TestPullDedupe: a second image on the same base fetches and unpacks only its
// own layer; pulling the same image again fetches nothing.
func TestPullDedupe(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	ll := linuxLayers(t)
	pushImage(t, reg.Host+"/lin/a:1", buildImage(t, linuxPlatform, ll[:2], types.OCIManifestSchema1))
	pushImage(t, reg.Host+"/lin/b:1", buildImage(t, linuxPlatform, ll, types.OCIManifestSchema1))
	s, fl := newStore(t)
	if _, err := s.Pull(ctx, reg.Host+"/lin/a:1"); err != nil {
		t.Fatal(err)
	}
	sum, err := s.Pull(ctx, reg.Host+"/lin/b:1")
	if err != nil {
		t.Fatal(err)
	}
	notes := []string{sum.Layers[0].Note, sum.Layers[1].Note, sum.Layers[2].Note}
	if !slices.Equal(notes, []string{"exists", "exists", "unpacked"}) {
		t.Errorf("layer notes %v, want the two shared layers to exist", notes)
	}
	if n := len(fl.keys(t)); n != 3 {
		t.Errorf("%d layers in the store, want 3 (%v)", n, fl.keys(t))
	}
	p := &countProgress{}
	if _, err := s.Pull(ctx, reg.Host+"/lin/b:1", WithProgress(p)); err != nil {
		t.Fatal(err)
	}
	if p.fetched != 0 || p.exists != 3 {
		t.Errorf("pulling again: %d fetched, %d present; want 0 and 3", p.fetched, p.exists)
	}
	// The unpacked chain applies whiteouts and opaque directories in order.
	checkRootfs(t, fl.viewRootfs(t, sum.Layers[2].ChainID))
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v", list, err)
	}
}

type countProgress struct {
	mu              sync.Mutex
	fetched, exists int
}

func (p *countProgress) Start(string, string, int64) {}
func (p *countProgress) Add(string, int64)           {}
func (p *countProgress) Done(id, note string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch note {
	case "fetched":
		p.fetched++
	case "exists":
		p.exists++
	}
}

// TestIndexPlatforms: an index with a Windows and a Linux image; --platform picks
// one, with containerd's os.version rule; all platforms keep the index, and a push
// keeps its digest.
func TestIndexPlatforms(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	win := buildImage(t, winPlatform, windowsLayers(t)[:1], types.OCIManifestSchema1)
	lin := buildImage(t, linuxPlatform, linuxLayers(t), types.OCIManifestSchema1)
	wp, lp := winPlatform, linuxPlatform
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: lin, Descriptor: v1.Descriptor{Platform: &lp}},
		mutate.IndexAddendum{Add: win, Descriptor: v1.Descriptor{Platform: &wp}})
	ref := reg.Host + "/multi/app:1"
	if err := remote.WriteIndex(mustRef(t, ref), idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	winDigest, _ := win.Digest()
	linDigest, _ := lin.Digest()

	for _, c := range []struct {
		platform string
		want     v1.Hash
	}{
		{"linux/amd64", linDigest},
		{"windows/amd64", winDigest},
		{"windows/amd64:10.0.20348.1", winDigest}, // same LTSC build
		{"windows/amd64:10.0.26100.1", winDigest}, // a later host runs 20348 images
		{"windows/amd64:10.0.17763.1", v1.Hash{}}, // an older host does not
		{"windows/amd64:10.1.20348.1", v1.Hash{}}, // another minor version
		{"linux/arm64", v1.Hash{}},
	} {
		t.Run(c.platform, func(t *testing.T) {
			s, _ := newStore(t)
			p, err := ParsePlatform(c.platform)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := s.Pull(ctx, ref, WithPlatform(p))
			if c.want.Hex == "" {
				if !errors.Is(err, ErrNoPlatform) {
					t.Fatalf("err = %v, want ErrNoPlatform", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sum.Digest != c.want.String() {
				t.Errorf("selected %s, want %s", sum.Digest, c.want)
			}
		})
	}

	s, _ := newStore(t)
	sum, err := s.Pull(ctx, ref, WithAllPlatforms())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Digest != idxDigest.String() || len(sum.Manifests) != 2 {
		t.Fatalf("pulled %s with %d manifests, want the index %s", sum.Digest, len(sum.Manifests), idxDigest)
	}
	ref2 := reg.Host + "/multi/copy:1"
	if _, err := s.Push(ctx, ref, ref2); err != nil {
		t.Fatal(err)
	}
	if got, err := remote.Head(mustRef(t, ref2)); err != nil || got.Digest != idxDigest {
		t.Fatalf("pushed index %v (%v), want %s", got, err, idxDigest)
	}
	// Save as a layout and load into another store: the same index digest.
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := s.Save(ctx, ref, "oci:"+dir+":multi"); err != nil {
		t.Fatal(err)
	}
	s2, _ := newStore(t)
	got, err := s2.Load(ctx, "oci:"+dir+":multi", WithAllPlatforms())
	if err != nil || got.Digest != idxDigest.String() || got.Name != "multi" {
		t.Fatalf("loaded %+v, %v", got, err)
	}
}

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
	}{
		{"oci:/a/b", Ref{Kind: OCILayout, Path: "/a/b"}},
		{"oci:/a/b:v1", Ref{Kind: OCILayout, Path: "/a/b", Tag: "v1"}},
		{"docker-archive:x.tar:repo", Ref{Kind: DockerArchive, Path: "x.tar", Tag: "repo"}},
		{"127.0.0.1:5000/a/b:c", Ref{Kind: Registry, Tag: "127.0.0.1:5000/a/b:c"}},
		{"docker://busybox", Ref{Kind: Registry, Tag: "busybox"}},
	} {
		got, err := ParseRef(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if _, err := ParseRef("oci:"); err == nil || !strings.Contains(err.Error(), "no path") {
		t.Errorf("oci: without a path: %v", err)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDockerConfigCredentials: credentials come from the Docker config file.
func TestDockerConfigCredentials(t *testing.T) {
	if _, err := exec.LookPath(registrytest.Binary); err != nil {
		t.Skip(registrytest.ErrNotInstalled)
	}
	reg, err := registrytest.StartWithAuth(t.TempDir(), "builder", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Stop() })
	ctx := context.Background()
	ref := reg.Host + "/private/app:1"
	img := buildImage(t, linuxPlatform, linuxLayers(t)[:1], types.OCIManifestSchema1)
	r := mustRef(t, ref)
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "builder", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	s, _ := newStore(t)
	if _, err := s.Pull(ctx, ref); err == nil {
		t.Fatal("pulled from a registry that wants credentials without any")
	}
	auth := base64.StdEncoding.EncodeToString([]byte("builder:s3cret"))
	os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600)
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, ref, reg.Host+"/private/copy:1"); err != nil {
		t.Fatal(err)
	}
}
