package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/hostcompute/hostcompute/internal/compress"
)

// Pull fetches the image ref names (a registry reference, oci:DIR[:TAG] or
// docker-archive:FILE[:TAG]) into the store, unpacks its layers and names it.
//
// Every blob is checked against its digest and size before it is kept; blobs
// already in the store are not fetched again, and a blob whose download was
// interrupted is resumed from where it stopped (the registry must honour Range
// requests; otherwise it is fetched again from the start). Layers are unpacked in
// order, each as the layer store key of its chainID; a chainID already present is
// not unpacked again. Each uncompressed layer is checked against its diffID.
//
// On failure the image is not named, layers this pull unpacked are removed, and
// blobs it added are removed again unless the pull was cancelled (then they stay,
// so the next pull resumes); a partial blob stays in the ingest directory.
func (s *Store) Pull(ctx context.Context, ref string, opts ...Option) (*Summary, error) {
	o := makeOptions(opts)
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	src, imgName, err := s.openSource(r, o)
	if err != nil {
		return nil, &Error{Image: ref, Op: "open", Err: err}
	}
	if o.name != "" {
		imgName = o.name
	}
	if imgName == "" {
		return nil, &Error{Image: ref, Op: "name", Err: fmt.Errorf("%w: the source names no image; give a name", ErrInvalid)}
	}
	p := &puller{s: s, o: o, src: src, ref: ref}
	sum, err := p.pull(ctx)
	if err != nil {
		p.rollback(ctx)
		return nil, err
	}
	top := v1.Descriptor{MediaType: types.MediaType(sum.MediaType), Size: sum.Size, Platform: sum.Platform}
	top.Digest, _ = v1.NewHash(sum.Digest)
	if err := s.content.setRef(imgName, top); err != nil {
		p.rollback(ctx)
		return nil, &Error{Image: ref, Op: "name", Err: err}
	}
	sum.Name = imgName
	return sum, nil
}

func (s *Store) openSource(r Ref, o *options) (source, string, error) {
	switch r.Kind {
	case OCILayout:
		return &layoutSource{dir: r.Path, tag: r.Tag}, r.Tag, nil
	case DockerArchive:
		tagName := r.Tag
		if tagName == "" {
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(r.Path) })
			if err != nil {
				return nil, "", fmt.Errorf("docker-archive %s: %w", r.Path, err)
			}
			if len(m) == 1 && len(m[0].RepoTags) > 0 {
				tagName = m[0].RepoTags[0]
			}
		}
		return &archiveSource{path: r.Path, tag: r.Tag}, tagName, nil
	}
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	nr, err := name.ParseReference(r.Tag, nopts...)
	if err != nil {
		return nil, "", err
	}
	auth, err := o.keychain.Resolve(nr.Context())
	if err != nil {
		return nil, "", fmt.Errorf("credentials for %s: %w", nr.Context().RegistryStr(), err)
	}
	ropts := []remote.Option{remote.WithAuth(auth)}
	return &registrySource{ref: nr, opts: ropts, auth: auth, foreign: o.foreign}, nr.Name(), nil
}

type puller struct {
	s   *Store
	o   *options
	src source
	ref string

	mu       sync.Mutex
	added    []v1.Hash // blobs this pull put in the store
	imported []string  // layers this pull unpacked, in order
}

func (p *puller) errorf(op string, d v1.Hash, err error) error {
	e := &Error{Image: p.ref, Op: op, Err: err}
	if d.Hex != "" {
		e.Digest = d.String()
	}
	return e
}

func (p *puller) pull(ctx context.Context) (*Summary, error) {
	desc, raw, err := p.src.root(ctx)
	if err != nil {
		return nil, p.errorf("fetch", v1.Hash{}, err)
	}
	if desc.Digest.Hex == "" {
		sum := sha256.Sum256(raw)
		desc.Digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		desc.Size = int64(len(raw))
	}
	if desc.MediaType == "" {
		desc.MediaType = sniffMediaType(raw)
	}
	return p.node(ctx, desc, raw, true)
}

// node fetches the manifest or index desc (raw is its content) and what it refers
// to; top says desc is what the reference names.
func (p *puller) node(ctx context.Context, desc v1.Descriptor, raw []byte, top bool) (*Summary, error) {
	switch {
	case desc.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, p.errorf("parse index", desc.Digest, fmt.Errorf("%w: %v", ErrInvalid, err))
		}
		if !p.o.allPlatforms {
			child, err := selectManifest(im, p.o.platform)
			if err != nil {
				return nil, p.errorf("select", desc.Digest, err)
			}
			craw, err := p.src.manifest(ctx, child)
			if err != nil {
				return nil, p.errorf("fetch manifest", child.Digest, err)
			}
			return p.node(ctx, child, craw, top)
		}
		sum := &Summary{Digest: desc.Digest.String(), MediaType: string(desc.MediaType), Size: desc.Size}
		for _, child := range im.Manifests {
			if !child.MediaType.IsImage() && !child.MediaType.IsIndex() {
				return nil, p.errorf("fetch", child.Digest, fmt.Errorf("%w: index entry of media type %q", ErrUnsupported, child.MediaType))
			}
			craw, err := p.src.manifest(ctx, child)
			if err != nil {
				return nil, p.errorf("fetch manifest", child.Digest, err)
			}
			cs, err := p.node(ctx, child, craw, false)
			if err != nil {
				return nil, err
			}
			sum.Manifests = append(sum.Manifests, *cs)
		}
		if err := p.put(ctx, desc, bytesOpener(raw), false); err != nil {
			return nil, p.errorf("store index", desc.Digest, err)
		}
		return sum, nil
	case desc.MediaType.IsImage():
		return p.image(ctx, desc, raw)
	case desc.MediaType.IsSchema1():
		return nil, p.errorf("fetch", desc.Digest, fmt.Errorf("%w: Docker schema 1 manifests", ErrUnsupported))
	}
	return nil, p.errorf("fetch", desc.Digest, fmt.Errorf("%w: manifest media type %q", ErrUnsupported, desc.MediaType))
}

func (p *puller) image(ctx context.Context, desc v1.Descriptor, raw []byte) (*Summary, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, p.errorf("parse manifest", desc.Digest, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	// The config first: it says the OS and the diffIDs.
	if err := p.put(ctx, m.Config, p.src.blob(m.Config), false); err != nil {
		return nil, p.errorf("fetch config", m.Config.Digest, err)
	}
	cb, err := p.s.content.readBlob(m.Config.Digest)
	if err != nil {
		return nil, p.errorf("read config", m.Config.Digest, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cb))
	if err != nil {
		return nil, p.errorf("parse config", m.Config.Digest, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, p.errorf("parse config", m.Config.Digest, fmt.Errorf("%w: %d diffIDs for %d layers", ErrInvalid, len(cf.RootFS.DiffIDs), len(m.Layers)))
	}
	chain := ChainIDs(cf.RootFS.DiffIDs)
	sum := &Summary{Digest: desc.Digest.String(), MediaType: string(desc.MediaType), Size: desc.Size, Platform: desc.Platform}
	if sum.Platform == nil {
		sum.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant, OSVersion: cf.OSVersion, OSFeatures: cf.OSFeatures}
	}
	for i, l := range m.Layers {
		if !l.MediaType.IsLayer() {
			return nil, p.errorf("fetch layer", l.Digest, fmt.Errorf("%w: layer media type %q", ErrUnsupported, l.MediaType))
		}
		sum.Layers = append(sum.Layers, LayerSummary{Digest: l.Digest.String(), MediaType: string(l.MediaType), Size: l.Size,
			DiffID: cf.RootFS.DiffIDs[i].String(), ChainID: chain[i].String()})
	}

	// Fetch layers in parallel; unpack each, in order, as soon as it and those
	// below it are here.
	done := make([]chan struct{}, len(m.Layers))
	for i := range done {
		done[i] = make(chan struct{})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.o.jobs + 1)
	g.Go(func() error {
		for i := range m.Layers {
			select {
			case <-done[i]:
			case <-gctx.Done():
				return gctx.Err()
			}
			if err := p.unpack(gctx, cf.OS, m.Layers[i], chain, cf.RootFS.DiffIDs, i, &sum.Layers[i]); err != nil {
				return err
			}
		}
		return nil
	})
	for i, l := range m.Layers {
		// Layers already unpacked need no blob... but the store keeps the
		// image's content whole, so that push and save need no network.
		g.Go(func() error {
			if err := p.put(gctx, l, p.src.blob(l), true); err != nil {
				return p.errorf("fetch layer", l.Digest, err)
			}
			close(done[i])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := p.put(ctx, desc, bytesOpener(raw), false); err != nil {
		return nil, p.errorf("store manifest", desc.Digest, err)
	}
	return sum, nil
}

// put ingests a blob and remembers that this pull added it.
func (p *puller) put(ctx context.Context, d v1.Descriptor, open opener, show bool) error {
	if p.s.content.has(d) {
		if show {
			p.o.progress.Start(d.Digest.String(), "layer", d.Size)
			p.o.progress.Done(d.Digest.String(), "exists", nil)
		}
		return nil
	}
	prog := func(int64) {}
	if show {
		p.o.progress.Start(d.Digest.String(), "layer", d.Size)
		prog = func(n int64) { p.o.progress.Add(d.Digest.String(), n) }
	}
	err := p.s.content.put(ctx, d, open, prog)
	if show && err != nil {
		p.o.progress.Done(d.Digest.String(), "failed", err)
	}
	if err != nil {
		return err
	}
	if show {
		p.o.progress.Done(d.Digest.String(), "fetched", nil)
	}
	p.mu.Lock()
	p.added = append(p.added, d.Digest)
	p.mu.Unlock()
	return nil
}

func (p *puller) unpack(ctx context.Context, osName string, l v1.Descriptor, chain, diffIDs []v1.Hash, i int, ls *LayerSummary) error {
	key := chain[i].String()
	parent := ""
	if i > 0 {
		parent = chain[i-1].String()
	}
	ok, err := p.s.layers.HasLayer(ctx, key)
	if err != nil {
		return p.errorf("unpack layer", l.Digest, err)
	}
	if ok {
		p.s.log.Debug("layer present", "chainID", key)
		ls.Unpacked, ls.Note = true, "exists"
		p.o.progress.Done(l.Digest.String(), "unpacked before", nil)
		return nil
	}
	p.o.progress.Done(l.Digest.String(), "unpacking", nil)
	f, err := p.s.content.open(l.Digest)
	if err != nil {
		return p.errorf("unpack layer", l.Digest, err)
	}
	defer f.Close()
	dr, err := compress.NewReader(f)
	if err != nil {
		return p.errorf("unpack layer", l.Digest, err)
	}
	defer dr.Close()
	// Decompress on another core while the layer is applied.
	zr := newReadAhead(dr, 4, 1<<20)
	defer zr.Close()
	if c, ok := p.s.layers.(diffIDChecker); ok && c.ChecksDiffID() {
		if err := p.s.layers.ImportLayer(ctx, key, parent, osName, diffIDs[i].String(), zr); err != nil {
			return p.errorf("unpack layer", l.Digest, err)
		}
		p.mu.Lock()
		p.imported = append(p.imported, key)
		p.mu.Unlock()
		ls.Unpacked, ls.Note = true, "unpacked"
		p.o.progress.Done(l.Digest.String(), "unpacked", nil)
		return nil
	}
	vr := newVerifyReader(zr, diffIDs[i])
	if err := p.s.layers.ImportLayer(ctx, key, parent, osName, diffIDs[i].String(), vr); err != nil {
		return p.errorf("unpack layer", l.Digest, err)
	}
	p.mu.Lock()
	p.imported = append(p.imported, key)
	p.mu.Unlock()
	if err := vr.drain(); err != nil {
		return p.errorf("unpack layer", l.Digest, err)
	}
	ls.Unpacked, ls.Note = true, "unpacked"
	p.o.progress.Done(l.Digest.String(), "unpacked", nil)
	return nil
}

// rollback removes what a failed pull unpacked, and the blobs it added unless it
// was cancelled.
func (p *puller) rollback(ctx context.Context) {
	canceled := ctx.Err() != nil
	ctx = context.WithoutCancel(ctx)
	for _, key := range slices.Backward(p.imported) {
		if err := p.s.layers.RemoveLayer(ctx, key); err != nil {
			p.s.log.Warn("removing a layer of a failed pull", "chainID", key, "error", err)
		}
	}
	if canceled {
		return
	}
	for _, d := range p.added {
		os.Remove(p.s.content.blobPath(d))
	}
}

// sniffMediaType finds the media type of a manifest whose source did not say it.
func sniffMediaType(raw []byte) types.MediaType {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	json.Unmarshal(raw, &m)
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return types.OCIImageIndex
	}
	return types.OCIManifestSchema1
}
