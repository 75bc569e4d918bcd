package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/internal/registrytest"
)

// blobFile is where the registry keeps a blob's bytes.
func blobFile(reg *registrytest.Registry, h v1.Hash) string {
	return filepath.Join(reg.Dir, "storage", "docker", "registry", "v2", "blobs", h.Algorithm, h.Hex[:2], h.Hex, "data")
}

// wantFailure checks a failed pull: the error has the class, names the image, the
// layer digest and the words given; the store is as it was.
func wantFailure(t *testing.T, err error, class error, before, after []string, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("pull succeeded")
	}
	if class != nil && !errors.Is(err, class) {
		t.Errorf("error %v is not %v", err, class)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
	if !slices.Equal(before, after) {
		t.Errorf("store changed by a failed pull:\nbefore %v\nafter  %v", before, after)
	}
}

func TestHostileRegistry(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	img := buildImage(t, linuxPlatform, linuxLayers(t), types.OCIManifestSchema1)
	ls, _ := img.Layers()
	target, _ := ls[1].Digest()

	t.Run("bytes do not match the digest", func(t *testing.T) {
		ref := reg.Host + "/bad/bytes:1"
		pushImage(t, ref, img)
		f := blobFile(reg, target)
		orig, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bad := slices.Clone(orig)
		bad[len(bad)/2] ^= 0xff
		os.WriteFile(f, bad, 0o644)
		defer os.WriteFile(f, orig, 0o644)
		s, fl := newStore(t)
		before := snapshot(t, s.root)
		_, err = s.Pull(ctx, ref)
		wantFailure(t, err, ErrDigestMismatch, before, snapshot(t, s.root), ref, target.String())
		if k := fl.keys(t); len(k) != 0 {
			t.Errorf("layers left: %v", k)
		}
	})
	t.Run("manifest names a missing blob", func(t *testing.T) {
		ref := reg.Host + "/bad/missing:1"
		pushImage(t, ref, img)
		f := blobFile(reg, target)
		orig, _ := os.ReadFile(f)
		os.Remove(f)
		defer os.WriteFile(f, orig, 0o644)
		s, fl := newStore(t)
		before := snapshot(t, s.root)
		_, err := s.Pull(ctx, ref)
		wantFailure(t, err, nil, before, snapshot(t, s.root), ref, target.String())
		if k := fl.keys(t); len(k) != 0 {
			t.Errorf("layers left: %v", k)
		}
	})
	t.Run("blob cut mid-stream then resumed", func(t *testing.T) {
		ref := "/bad/cut:1"
		pushImage(t, reg.Host+ref, img)
		u, _ := url.Parse("http://" + reg.Host)
		proxy := httputil.NewSingleHostReverseProxy(u)
		var cut atomic.Bool
		cut.Store(true)
		var ranged atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/blobs/"+target.String()) && r.Method == http.MethodGet {
				if rg := r.Header.Get("Range"); rg != "" {
					ranged.Store(rg)
				}
				if cut.Load() {
					// Send the headers and half the body, then drop the connection.
					rec := httptest.NewRecorder()
					proxy.ServeHTTP(rec, r)
					body := rec.Body.Bytes()
					for k, v := range rec.Header() {
						w.Header()[k] = v
					}
					w.WriteHeader(rec.Code)
					w.Write(body[:len(body)/2])
					w.(http.Flusher).Flush()
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				}
			}
			proxy.ServeHTTP(w, r)
		}))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		s, fl := newStore(t)
		before := snapshot(t, s.root)
		_, err := s.Pull(ctx, host+ref)
		wantFailure(t, err, io.ErrUnexpectedEOF, before, snapshot(t, s.root), host+ref, target.String())
		if k := fl.keys(t); len(k) != 0 {
			t.Errorf("layers left: %v", k)
		}
		partial := filepath.Join(s.root, "content-ingest", "sha256-"+target.Hex)
		if st, err := os.Stat(partial); err != nil || st.Size() == 0 {
			t.Fatalf("partial blob not kept: %v", err)
		}
		cut.Store(false)
		if _, err := s.Pull(ctx, host+ref); err != nil {
			t.Fatal(err)
		}
		if rg, _ := ranged.Load().(string); !strings.HasPrefix(rg, "bytes=") || rg == "bytes=0-" {
			t.Errorf("second pull asked for range %q, want it to resume", rg)
		}
		if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("partial blob left after the resumed pull: %v", err)
		}
	})
}

// TestHostileLayers: layer tars that attack the host fail with an error naming the
// image, the layer and the entry, and nothing is written outside the layer.
func TestHostileLayers(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	outside := t.TempDir()
	cases := []struct {
		name     string
		platform v1.Platform
		layers   [][]byte
		entry    string
	}{
		{"linux path traversal", linuxPlatform, [][]byte{mkTar(t, tdir("etc"), tfile("../../../../"+outside+"/escaped", "x"))}, "escaped"},
		{"linux hard link out", linuxPlatform, [][]byte{mkTar(t, tent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "passwd", Linkname: "../../../../etc/passwd"}})}, "passwd"},
		{"linux symlink escape", linuxPlatform, [][]byte{
			mkTar(t, tlink("evil", outside)),
			mkTar(t, tfile("evil/escaped", "x"), tfile("../evil2", "x"))}, "evil"},
		{"windows path traversal", winPlatform, [][]byte{mkTar(t, tdir("Files"), tfile("Files/../../escaped", "x"))}, "escaped"},
		{"windows symlink escape", winPlatform, [][]byte{mkTar(t, tdir("Files"), tlink("Files/evil", outside), tfile("Files/evil/escaped", "x"))}, "Files/evil"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := buildImage(t, c.platform, c.layers, types.OCIManifestSchema1)
			ls, _ := img.Layers()
			bad, _ := ls[len(ls)-1].Digest()
			ref := reg.Host + "/hostile/" + strings.ReplaceAll(c.name, " ", "-") + ":" + string(rune('a'+i))
			pushImage(t, ref, img)
			s, fl := newStore(t)
			before := snapshot(t, s.root)
			_, err := s.Pull(ctx, ref, WithPlatform(c.platform))
			wantFailure(t, err, nil, before, snapshot(t, s.root), ref, bad.String(), c.entry)
			if k := fl.keys(t); len(k) != 0 {
				t.Errorf("layers left: %v", k)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("written outside the layer: %v", ents)
			}
			t.Log(err)
		})
	}
}

// TestWrongDiffID: a config whose diffID does not match the layer's content.
func TestWrongDiffID(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	for _, c := range []struct {
		name string
		p    v1.Platform
		ls   [][]byte
	}{{"linux", linuxPlatform, linuxLayers(t)[:1]}, {"windows", winPlatform, windowsLayers(t)[:1]}} {
		t.Run(c.name, func(t *testing.T) {
			img := buildImage(t, c.p, c.ls, types.OCIManifestSchema1)
			cf, _ := img.ConfigFile()
			cf = cf.DeepCopy()
			cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
			img, err := mutate.ConfigFile(img, cf)
			if err != nil {
				t.Fatal(err)
			}
			ls, _ := img.Layers()
			bad, _ := ls[0].Digest()
			ref := reg.Host + "/bad/diffid-" + c.name + ":1"
			pushImage(t, ref, img)
			s, fl := newStore(t)
			before := snapshot(t, s.root)
			_, err = s.Pull(ctx, ref, WithPlatform(c.p))
			wantFailure(t, err, ErrDigestMismatch, before, snapshot(t, s.root), ref, bad.String())
			if k := fl.keys(t); len(k) != 0 {
				t.Errorf("layers left: %v", k)
			}
		})
	}
}

// TestForeignLayer: a non-distributable layer is fetched from the URL its
// descriptor names only when asked, and verified like any blob.
func TestForeignLayer(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	layers := windowsLayers(t)
	img := buildImage(t, winPlatform, layers[1:], types.DockerManifestSchema2)
	base := buildImage(t, winPlatform, layers[:1], types.DockerManifestSchema2)
	bl, _ := base.Layers()
	blob, _ := bl[0].Compressed()
	body, _ := io.ReadAll(blob)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.ServeContent(w, r, "layer", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	// The base layer as a foreign layer below the image's own.
	img, err := mutate.Append(base, mutate.Addendum{Layer: mustLayers(t, img)[0], MediaType: types.DockerLayer})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	m = m.DeepCopy()
	m.Layers[0].MediaType = types.DockerForeignLayer
	m.Layers[0].URLs = []string{srv.URL + "/layer"}
	foreign := &rawImage{Image: img, manifest: m}
	ref := reg.Host + "/foreign/app:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, foreign); err != nil {
		t.Fatal(err)
	}

	s, fl := newStore(t)
	_, err = s.Pull(ctx, ref, WithPlatform(winPlatform))
	if !errors.Is(err, ErrForeignLayer) || hits.Load() != 0 {
		t.Fatalf("pull without foreign layers: %v (%d requests to the URL)", err, hits.Load())
	}
	if k := fl.keys(t); len(k) != 0 {
		t.Errorf("layers left: %v", k)
	}
	sum, err := s.Pull(ctx, ref, WithPlatform(winPlatform), WithForeignLayers())
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() == 0 || !sum.Layers[0].Unpacked {
		t.Errorf("the foreign layer was not fetched from its URL: %+v", sum.Layers[0])
	}
}

func mustLayers(t *testing.T, img v1.Image) []v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// rawImage is img with its manifest replaced (media types and URLs of layers).
type rawImage struct {
	v1.Image
	manifest *v1.Manifest
}

func (r *rawImage) Manifest() (*v1.Manifest, error) { return r.manifest, nil }
func (r *rawImage) RawManifest() ([]byte, error)    { return json.Marshal(r.manifest) }
func (r *rawImage) Digest() (v1.Hash, error) {
	b, _ := r.RawManifest()
	h, _, err := v1.SHA256(bytes.NewReader(b))
	return h, err
}
func (r *rawImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := r.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	for _, d := range r.manifest.Layers {
		if d.Digest == h && d.MediaType == types.DockerForeignLayer {
			return &foreignLayer{Layer: l}, nil
		}
	}
	return l, nil
}
func (r *rawImage) Layers() ([]v1.Layer, error) {
	var out []v1.Layer
	for _, d := range r.manifest.Layers {
		l, err := r.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

type foreignLayer struct{ v1.Layer }

func (foreignLayer) MediaType() (types.MediaType, error) { return types.DockerForeignLayer, nil }

// TestInterruptedPullResumes: a pull cancelled in the middle of a blob keeps what
// it fetched (and the partial blob), names nothing, and the next pull resumes.
func TestInterruptedPullResumes(t *testing.T) {
	reg := startRegistry(t)
	img := buildImage(t, linuxPlatform, linuxLayers(t), types.OCIManifestSchema1)
	ls, _ := img.Layers()
	target, _ := ls[1].Digest()
	pushImage(t, reg.Host+"/interrupt/app:1", img)
	u, _ := url.Parse("http://" + reg.Host)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var hold atomic.Bool
	hold.Store(true)
	halfway := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold.Load() && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+target.String()) {
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			halfway <- struct{}{}
			<-r.Context().Done() // until the client gives up
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/interrupt/app:1"
	s, fl := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-halfway; time.Sleep(100 * time.Millisecond); cancel() }()
	if _, err := s.Pull(ctx, ref, WithJobs(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	if list, _ := s.List(context.Background()); len(list) != 0 {
		t.Errorf("a cancelled pull named %v", list)
	}
	if k := fl.keys(t); len(k) != 0 {
		t.Errorf("layers left: %v", k)
	}
	partial := filepath.Join(s.root, "content-ingest", "sha256-"+target.Hex)
	if st, err := os.Stat(partial); err != nil || st.Size() == 0 {
		t.Fatalf("partial blob not kept: %v", err)
	}
	hold.Store(false)
	if _, err := s.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}
