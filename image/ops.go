package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// lookup finds the descriptor named n: an exact name, a digest, or a unique
// digest prefix (12 hex digits or more).
func (s *Store) lookup(n string) (v1.Descriptor, string, error) {
	im, err := s.content.index()
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	for _, d := range im.Manifests {
		if d.Annotations[refNameAnnotation] == n {
			return d, n, nil
		}
	}
	h := strings.TrimPrefix(n, "sha256:")
	if len(h) >= 12 {
		var found []v1.Descriptor
		for _, d := range im.Manifests {
			if strings.HasPrefix(d.Digest.Hex, h) && !slices.ContainsFunc(found, func(f v1.Descriptor) bool { return f.Digest == d.Digest }) {
				found = append(found, d)
			}
		}
		if len(found) == 1 {
			return found[0], found[0].Annotations[refNameAnnotation], nil
		}
	}
	return v1.Descriptor{}, "", fmt.Errorf("image %q: %w", n, ErrNotFound)
}

func (s *Store) layoutPath() layout.Path { return layout.Path(s.content.layout) }

// List returns the stored images, by name.
func (s *Store) List(ctx context.Context) ([]Summary, error) {
	im, err := s.content.index()
	if err != nil {
		return nil, err
	}
	out := []Summary{}
	for _, d := range im.Manifests {
		out = append(out, Summary{Name: d.Annotations[refNameAnnotation], Digest: d.Digest.String(),
			MediaType: string(d.MediaType), Size: d.Size, Platform: d.Platform})
	}
	return out, nil
}

// Inspect describes the image named n: its manifests, layers (with chainIDs and
// whether they are unpacked) and config.
func (s *Store) Inspect(ctx context.Context, n string) (*Summary, error) {
	d, nm, err := s.lookup(n)
	if err != nil {
		return nil, err
	}
	sum, err := s.describe(ctx, d)
	if err != nil {
		return nil, &Error{Image: n, Op: "inspect", Digest: d.Digest.String(), Err: err}
	}
	sum.Name = nm
	return sum, nil
}

func (s *Store) describe(ctx context.Context, d v1.Descriptor) (*Summary, error) {
	raw, err := s.content.readBlob(d.Digest)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Digest: d.Digest.String(), MediaType: string(d.MediaType), Size: d.Size, Platform: d.Platform}
	if d.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		for _, c := range im.Manifests {
			cs, err := s.describe(ctx, c)
			if err != nil {
				return nil, err
			}
			sum.Manifests = append(sum.Manifests, *cs)
		}
		return sum, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	cb, err := s.content.readBlob(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cb))
	if err != nil {
		return nil, err
	}
	sum.Config = json.RawMessage(cb)
	if sum.Platform == nil {
		sum.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, OSVersion: cf.OSVersion, OSFeatures: cf.OSFeatures, Variant: cf.Variant}
	}
	chain := ChainIDs(cf.RootFS.DiffIDs)
	for i, l := range m.Layers {
		ls := LayerSummary{Digest: l.Digest.String(), MediaType: string(l.MediaType), Size: l.Size}
		if i < len(chain) {
			ls.DiffID, ls.ChainID = cf.RootFS.DiffIDs[i].String(), chain[i].String()
			ls.Unpacked, _ = s.layers.HasLayer(ctx, ls.ChainID)
		}
		sum.Layers = append(sum.Layers, ls)
	}
	return sum, nil
}

// Tag gives the image named src the name dst as well, replacing what had dst.
func (s *Store) Tag(ctx context.Context, src, dst string) error {
	d, _, err := s.lookup(src)
	if err != nil {
		return err
	}
	return s.content.setRef(dst, d)
}

// Remove drops the names; then blobs no name reaches and image layers no stored
// image uses are removed (layers other layers are built on stay).
func (s *Store) Remove(ctx context.Context, names ...string) error {
	for _, n := range names {
		if _, _, err := s.lookup(n); err != nil {
			return err
		}
	}
	err := s.content.update(func(im *v1.IndexManifest) error {
		im.Manifests = slices.DeleteFunc(im.Manifests, func(d v1.Descriptor) bool {
			return slices.Contains(names, d.Annotations[refNameAnnotation])
		})
		return nil
	})
	if err != nil {
		return err
	}
	return s.GC(ctx)
}

// GC removes blobs that no named image reaches and the layers of removed images
// that no named image uses.
func (s *Store) GC(ctx context.Context) error {
	unlock, err := flockPath(s.content.lock)
	if err != nil {
		return err
	}
	defer unlock()
	im, err := s.content.index()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	layersKept := map[string]bool{}
	var walk func(d v1.Descriptor) error
	walk = func(d v1.Descriptor) error {
		keep[d.Digest.Hex] = true
		raw, err := s.content.readBlob(d.Digest)
		if err != nil {
			return err
		}
		if d.MediaType.IsIndex() {
			ix, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return err
			}
			for _, c := range ix.Manifests {
				if err := walk(c); err != nil {
					return err
				}
			}
			return nil
		}
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return err
		}
		keep[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			keep[l.Digest.Hex] = true
		}
		if cb, err := s.content.readBlob(m.Config.Digest); err == nil {
			if cf, err := v1.ParseConfigFile(bytes.NewReader(cb)); err == nil {
				for _, c := range ChainIDs(cf.RootFS.DiffIDs) {
					layersKept[c.String()] = true
				}
			}
		}
		return nil
	}
	for _, d := range im.Manifests {
		if err := walk(d); err != nil {
			return fmt.Errorf("gc: image %s: %w", d.Annotations[refNameAnnotation], err)
		}
	}
	// Layers of images about to lose their blobs: read them before removing.
	dir := s.layoutPath()
	ents, err := os.ReadDir(string(dir) + "/blobs/sha256")
	if err != nil {
		return err
	}
	var dropLayers []string
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		h := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		// Only small blobs can be configs; layers are not read.
		if info, err := e.Info(); err != nil || info.Size() > maxManifest {
			continue
		}
		if b, err := s.content.readBlob(h); err == nil {
			if cf, err := v1.ParseConfigFile(bytes.NewReader(b)); err == nil && cf.RootFS.Type == "layers" {
				for _, c := range slices.Backward(ChainIDs(cf.RootFS.DiffIDs)) {
					if !layersKept[c.String()] {
						dropLayers = append(dropLayers, c.String())
					}
				}
			}
		}
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			if err := os.Remove(s.content.blobPath(v1.Hash{Algorithm: "sha256", Hex: e.Name()})); err != nil {
				return err
			}
		}
	}
	for _, key := range dropLayers {
		ok, err := s.layers.HasLayer(ctx, key)
		if err != nil || !ok {
			continue
		}
		if err := s.layers.RemoveLayer(ctx, key); err != nil {
			// A layer another layer (a container's, another image's) is built
			// on stays.
			s.log.Debug("gc: layer kept", "chainID", key, "error", err)
		}
	}
	return nil
}

// taggable returns the stored image or index named n as go-containerregistry
// values over the content layout.
func (s *Store) taggable(n string) (v1.Descriptor, v1.Image, v1.ImageIndex, error) {
	d, _, err := s.lookup(n)
	if err != nil {
		return d, nil, nil, err
	}
	if d.MediaType.IsIndex() {
		ii, err := s.layoutPath().ImageIndex()
		if err != nil {
			return d, nil, nil, err
		}
		idx, err := ii.ImageIndex(d.Digest)
		return d, nil, idx, err
	}
	img, err := s.layoutPath().Image(d.Digest)
	return d, img, nil, err
}

// Push sends the image named n to the registry reference dest (n itself when
// dest is empty). Manifests and blobs go as stored, byte for byte, so digests are
// kept; blobs the registry has are not sent again.
func (s *Store) Push(ctx context.Context, n, dest string, opts ...Option) (*Summary, error) {
	o := makeOptions(opts)
	if dest == "" {
		dest = n
	}
	d, img, idx, err := s.taggable(n)
	if err != nil {
		return nil, err
	}
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(dest, "docker://"), nopts...)
	if err != nil {
		return nil, fmt.Errorf("push: reference %q: %w", dest, err)
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(o.keychain), remote.WithJobs(o.jobs)}
	if o.foreign {
		ropts = append(ropts, remote.WithNondistributable)
	}
	updates := make(chan v1.Update, 16)
	ropts = append(ropts, remote.WithProgress(updates))
	go func() {
		var last int64
		started := false
		for u := range updates {
			if u.Total > 0 {
				if !started {
					o.progress.Start(d.Digest.String(), "push", u.Total)
					started = true
				}
				o.progress.Add(d.Digest.String(), u.Complete-last)
				last = u.Complete
			}
		}
	}()
	if idx != nil {
		err = remote.WriteIndex(ref, idx, ropts...)
	} else {
		err = remote.Write(ref, img, ropts...)
	}
	o.progress.Done(d.Digest.String(), "pushed", err)
	if err != nil {
		return nil, &Error{Image: n, Op: "push to " + ref.String(), Err: err}
	}
	return &Summary{Name: ref.Name(), Digest: d.Digest.String(), MediaType: string(d.MediaType), Size: d.Size, Platform: d.Platform}, nil
}

// Save writes the image named n to dest: oci:DIR[:TAG] adds it to an OCI image
// layout (made if missing) under TAG (default: n), byte for byte;
// docker-archive:FILE[:TAG] writes a docker save tar (its manifest is Docker's,
// so the manifest digest is not kept there; the config and layers are).
func (s *Store) Save(ctx context.Context, n, dest string) (*Summary, error) {
	r, err := ParseRef(dest)
	if err != nil {
		return nil, err
	}
	d, img, idx, err := s.taggable(n)
	if err != nil {
		return nil, err
	}
	tag := r.Tag
	if tag == "" {
		tag = n
	}
	sum := &Summary{Name: tag, Digest: d.Digest.String(), MediaType: string(d.MediaType), Size: d.Size, Platform: d.Platform}
	switch r.Kind {
	case OCILayout:
		p, err := layout.FromPath(r.Path)
		if err != nil {
			if p, err = layout.Write(r.Path, empty.Index); err != nil {
				return nil, fmt.Errorf("save: %s: %w", r.Path, err)
			}
		}
		ann := layout.WithAnnotations(map[string]string{refNameAnnotation: tag})
		match := func(desc v1.Descriptor) bool { return desc.Annotations[refNameAnnotation] == tag }
		if idx != nil {
			err = p.ReplaceIndex(idx, match, ann)
		} else {
			var lopts = []layout.Option{ann}
			if d.Platform != nil {
				lopts = append(lopts, layout.WithPlatform(*d.Platform))
			}
			err = p.ReplaceImage(img, match, lopts...)
		}
		if err != nil {
			return nil, &Error{Image: n, Op: "save to " + dest, Err: err}
		}
		return sum, nil
	case DockerArchive:
		if idx != nil {
			return nil, &Error{Image: n, Op: "save to " + dest, Err: fmt.Errorf("%w: a docker archive holds images, not an index; save one platform", ErrUnsupported)}
		}
		t, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("save: tag %q: %w", tag, err)
		}
		if err := writeArchive(r.Path, t, img); err != nil {
			return nil, &Error{Image: n, Op: "save to " + dest, Err: err}
		}
		return sum, nil
	}
	return nil, fmt.Errorf("save: %q: %w: save to oci:DIR[:TAG] or docker-archive:FILE[:TAG]", dest, ErrUnsupported)
}

// writeArchive writes a docker save tar through a temporary file renamed into place.
func writeArchive(path string, t name.Tag, img v1.Image) error {
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, map[name.Reference]v1.Image{t: img}); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Load is Pull from an OCI layout or a docker archive.
func (s *Store) Load(ctx context.Context, src string, opts ...Option) (*Summary, error) {
	r, err := ParseRef(src)
	if err != nil {
		return nil, err
	}
	if r.Kind == Registry {
		return nil, fmt.Errorf("load: %q: %w: load from oci:DIR[:TAG] or docker-archive:FILE[:TAG]", src, ErrUnsupported)
	}
	return s.Pull(ctx, src, opts...)
}

// ExportLayer writes the unpacked layer of the image named n at index i (0 = base)
// as a layer tar from the layer store.
func (s *Store) ExportLayer(ctx context.Context, n string, i int, w interface{ Write([]byte) (int, error) }) error {
	sum, err := s.Inspect(ctx, n)
	if err != nil {
		return err
	}
	if i < 0 || i >= len(sum.Layers) {
		return fmt.Errorf("image %s: layer %d: %w (it has %d)", n, i, ErrNotFound, len(sum.Layers))
	}
	if !sum.Layers[i].Unpacked {
		return fmt.Errorf("image %s: layer %s: %w: not unpacked", n, sum.Layers[i].Digest, ErrNotFound)
	}
	return s.layers.ExportLayer(ctx, sum.Layers[i].ChainID, w)
}
