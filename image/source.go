package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Ref is where an image comes from or goes to.
//
//	REGISTRY/REPO[:TAG|@DIGEST]     a registry (docker:// may prefix it)
//	oci:DIR[:TAG]                   an OCI image layout directory
//	docker-archive:FILE[:TAG]       a docker save tar
//
// DIR and FILE cannot hold a colon: the first one ends them.
type Ref struct {
	Kind RefKind
	// Path is the directory or file of oci: and docker-archive: references.
	Path string
	// Tag is the image's name within a layout or archive (may be empty), or the
	// registry reference.
	Tag string
}

// RefKind is the transport of a Ref.
type RefKind int

const (
	Registry RefKind = iota
	OCILayout
	DockerArchive
)

func (r Ref) String() string {
	switch r.Kind {
	case OCILayout:
		return "oci:" + r.Path + suffix(r.Tag)
	case DockerArchive:
		return "docker-archive:" + r.Path + suffix(r.Tag)
	}
	return r.Tag
}

func suffix(tag string) string {
	if tag == "" {
		return ""
	}
	return ":" + tag
}

// ParseRef parses a reference in one of the forms of Ref.
func ParseRef(s string) (Ref, error) {
	for _, k := range []struct {
		prefix string
		kind   RefKind
	}{{"oci:", OCILayout}, {"docker-archive:", DockerArchive}} {
		if rest, ok := strings.CutPrefix(s, k.prefix); ok {
			path, tag := rest, ""
			// As skopeo reads them: the path ends at the first colon, and
			// the rest (which may hold colons) is the name.
			if i := strings.IndexByte(rest, ':'); i >= 0 {
				path, tag = rest[:i], rest[i+1:]
			}
			if path == "" {
				return Ref{}, fmt.Errorf("reference %q: no path", s)
			}
			return Ref{Kind: k.kind, Path: path, Tag: tag}, nil
		}
	}
	s = strings.TrimPrefix(s, "docker://")
	if _, err := name.ParseReference(s); err != nil {
		return Ref{}, fmt.Errorf("reference %q: %w", s, err)
	}
	return Ref{Kind: Registry, Tag: s}, nil
}

// source is what a pull reads: the top manifest, child manifests and blobs.
type source interface {
	// root returns the descriptor and the bytes of the manifest or index the
	// reference names.
	root(ctx context.Context) (v1.Descriptor, []byte, error)
	// manifest returns the bytes of a child manifest of an index.
	manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// blob opens a blob (config or layer) from offset.
	blob(d v1.Descriptor) opener
}

type registrySource struct {
	ref      name.Reference
	opts     []remote.Option
	auth     authn.Authenticator
	foreign  bool
	insecure bool
	client   *http.Client // with the registry's token, made on first use
}

func (s *registrySource) root(ctx context.Context) (v1.Descriptor, []byte, error) {
	d, err := remote.Get(s.ref, append(s.opts, remote.WithContext(ctx))...)
	if err != nil {
		return v1.Descriptor{}, nil, classifyRemote(err)
	}
	return d.Descriptor, d.Manifest, nil
}

func (s *registrySource) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	got, err := remote.Get(s.ref.Context().Digest(d.Digest.String()), append(s.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, classifyRemote(err)
	}
	return got.Manifest, nil
}

// classifyRemote makes a registry's "unknown manifest/blob" answer an ErrNotFound.
func classifyRemote(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

func (s *registrySource) blob(d v1.Descriptor) opener {
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		if !d.MediaType.IsDistributable() && len(d.URLs) > 0 {
			if !s.foreign {
				return nil, 0, ErrForeignLayer
			}
			var last error
			for _, u := range d.URLs {
				rc, start, err := rangeGet(ctx, http.DefaultClient, u, offset)
				if err == nil {
					return rc, start, nil
				}
				last = err
			}
			return nil, 0, last
		}
		if s.client == nil {
			repo := s.ref.Context()
			rt, err := transport.NewWithContext(ctx, repo.Registry, s.auth, remote.DefaultTransport, []string{repo.Scope(transport.PullScope)})
			if err != nil {
				return nil, 0, err
			}
			s.client = &http.Client{Transport: rt}
		}
		repo := s.ref.Context()
		u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d.Digest)
		return rangeGet(ctx, s.client, u, offset)
	}
}

// rangeGet GETs u from offset on; a server that ignores the range gets the whole
// blob read from 0.
func rangeGet(ctx context.Context, c *http.Client, u string, offset int64) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, nil
	case http.StatusPartialContent:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(offset, 10)+"-") {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: unexpected Content-Range %q", u, resp.Header.Get("Content-Range"))
		}
		return resp.Body, offset, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return rangeGet(ctx, c, u, 0)
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s: %w", u, ErrNotFound)
	}
	resp.Body.Close()
	return nil, 0, fmt.Errorf("GET %s: %s", u, resp.Status)
}

// layoutSource reads an OCI image layout directory.
type layoutSource struct {
	dir, tag string
}

func (s *layoutSource) root(ctx context.Context) (v1.Descriptor, []byte, error) {
	p, err := layout.FromPath(s.dir)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("oci layout %s: %w", s.dir, err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("oci layout %s: index.json: %w: %v", s.dir, ErrInvalid, err)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if s.tag == "" || d.Annotations[refNameAnnotation] == s.tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && s.tag != "":
		return v1.Descriptor{}, nil, fmt.Errorf("oci layout %s: no image named %q: %w", s.dir, s.tag, ErrNotFound)
	case len(found) == 0:
		return v1.Descriptor{}, nil, fmt.Errorf("oci layout %s: no image: %w", s.dir, ErrNotFound)
	case len(found) > 1:
		return v1.Descriptor{}, nil, fmt.Errorf("oci layout %s: %d images; name one with oci:DIR:NAME: %w", s.dir, len(found), ErrInvalid)
	}
	b, err := s.manifest(ctx, found[0])
	return found[0], b, err
}

func (s *layoutSource) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	rc, _, err := s.blob(d)(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxManifest))
}

func (s *layoutSource) blob(d v1.Descriptor) opener {
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		f, err := os.Open(filepath.Join(s.dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("oci layout %s: blob %s: %w", s.dir, d.Digest, ErrNotFound)
		}
		if err != nil {
			return nil, 0, err
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, offset, nil
	}
}

// maxManifest bounds what is read of a manifest, index or config (they are small).
const maxManifest = 8 << 20

// archiveSource reads a docker save tar through go-containerregistry's tarball
// package, which gives the image an OCI-style manifest of the archive's layers.
type archiveSource struct {
	path string
	tag  string
	img  v1.Image
}

func (s *archiveSource) root(ctx context.Context) (v1.Descriptor, []byte, error) {
	var tag *name.Tag
	if s.tag != "" {
		t, err := name.NewTag(s.tag)
		if err != nil {
			return v1.Descriptor{}, nil, fmt.Errorf("docker-archive %s: %w", s.path, err)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(s.path, tag)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("docker-archive %s: %w", s.path, err)
	}
	s.img = img
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("docker-archive %s: %w", s.path, err)
	}
	mt, _ := img.MediaType()
	d, _ := img.Digest()
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}, raw, nil
}

func (s *archiveSource) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	return nil, fmt.Errorf("docker-archive %s: %w: archives hold no index", s.path, ErrInvalid)
}

func (s *archiveSource) blob(d v1.Descriptor) opener {
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		if cd, err := s.img.ConfigName(); err == nil && cd == d.Digest {
			b, err := s.img.RawConfigFile()
			if err != nil {
				return nil, 0, err
			}
			return bytesOpener(b)(ctx, 0)
		}
		l, err := s.img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, 0, fmt.Errorf("docker-archive %s: layer %s: %w", s.path, d.Digest, err)
		}
		rc, err := l.Compressed()
		return rc, 0, err
	}
}
