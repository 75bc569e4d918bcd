package image

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// LayerPather is the optional ability of a Layers store to give the folder of a
// committed Windows layer, which Append reads to give new files the metadata
// Windows would (inherited security descriptors, copy-up of parents' files).
type LayerPather interface {
	LayerPath(ctx context.Context, key string) (string, error)
}

// AppendSpec says what Append builds.
type AppendSpec struct {
	// Base names a stored Windows or Linux image, or is Scratch.
	Base string
	// Layer is the new layer's content (unless FromKey is set): an OCI Windows layer tar (entries under
	// Files/, Hives/, UtilityVM/; plain, gzip or zstd), taken as it is after
	// checking; a plain tar of files (written as the layer's Files/); or a
	// directory whose contents become the layer's Files/.
	Layer string
	// FromKey, instead of Layer, names an active layer of the layer store made
	// over the base's top layer (a container's writable layer): its changes,
	// exported by the store as a Windows layer tar, are the new layer (commit).
	FromKey string
	// Platform is the OS, architecture, os.version and os.features of an image
	// built on Scratch (windows or linux); other bases give their own.
	Platform v1.Platform
	// Name is the new image's name in the store.
	Name string
	// Created is the new image's creation time (default: the base's), so the
	// same inputs give the same manifest digest.
	Created time.Time
	// CreatedBy is the history entry's text (default "hcs image append").
	CreatedBy string
}

// Append builds a Windows image on Linux: the base image with one more layer made
// from spec.Layer. Files and directories of a plain tar or a directory get the
// Windows metadata Windows gives files a container creates (attributes, times,
// the security descriptor inherited from their directory in the base, see
// winlayer.UpperReader); names the base has keep the base's metadata. Times come
// from the modification times alone (see stableTimes), so that reading or copying
// the directory does not change the layer. The config
// keeps the base's os, os.version and os.features. The layer is written
// deterministically and compressed with gzip, and the image is stored under
// spec.Name and its new layer unpacked, so it can be pushed, saved or converted.
//
// A Linux base (or Scratch with a linux platform) takes spec.Layer, an OCI
// layer tar, as it is: the layer is its bytes, uncompressed then gzip'd.
func (s *Store) Append(ctx context.Context, spec AppendSpec) (*Summary, error) {
	fail := func(op string, err error) error { return &Error{Image: spec.Base, Op: op, Err: err} }
	var (
		d   v1.Descriptor
		img v1.Image
		err error
	)
	if spec.Base == Scratch {
		if img, err = scratchImage(spec.Platform); err != nil {
			return nil, fail("append", err)
		}
	} else if d, img, _, err = s.taggable(spec.Base); err != nil {
		return nil, err
	}
	if img == nil {
		return nil, fail("append", fmt.Errorf("%w: the base is an index; pull one platform of it", ErrUnsupported))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fail("read config", err)
	}
	if cf.OS != "windows" && cf.OS != "linux" {
		return nil, fail("append", fmt.Errorf("%w: append builds Windows and Linux images; the base is a %s image", ErrUnsupported, cf.OS))
	}
	if cf.OS == "linux" && spec.FromKey != "" {
		return nil, fail("commit", fmt.Errorf("%w: commit makes Windows layers; the base is a linux image", ErrUnsupported))
	}
	chain := ChainIDs(cf.RootFS.DiffIDs)
	for _, c := range chain {
		if ok, err := s.layers.HasLayer(ctx, c.String()); err != nil || !ok {
			return nil, fail("append", fmt.Errorf("base layer %s is not unpacked: %w", c, ErrNotFound))
		}
	}

	// The new layer as an OCI Windows layer tar, staged beside the content.
	tmp, err := os.CreateTemp(s.content.ingest, "append-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if spec.FromKey != "" {
		if err := s.layers.ExportLayer(ctx, spec.FromKey, tmp); err != nil {
			return nil, fail("export the changes of "+spec.FromKey, err)
		}
	} else if cf.OS == "linux" {
		if err := linuxLayerTar(tmp, spec.Layer); err != nil {
			return nil, fail("make layer of "+spec.Layer, err)
		}
	} else if err := s.windowsLayerTar(ctx, tmp, spec.Layer, chain); err != nil {
		return nil, fail("make layer of "+spec.Layer, err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}

	mf, err := img.Manifest()
	if err != nil {
		return nil, fail("read manifest", err)
	}
	lmt := types.OCILayer
	if mf.MediaType == types.DockerManifestSchema2 {
		lmt = types.DockerLayer
	}
	layer, err := tarball.LayerFromFile(tmp.Name(), tarball.WithMediaType(lmt))
	if err != nil {
		return nil, fail("compress layer", err)
	}
	created := spec.Created
	if created.IsZero() {
		created = cf.Created.Time
	}
	by := spec.CreatedBy
	if by == "" {
		by = "hcs image append"
		if spec.FromKey != "" {
			by = "hcs image commit"
		}
	}
	out, err := mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: lmt,
		History: v1.History{Created: v1.Time{Time: created.UTC()}, CreatedBy: by}})
	if err != nil {
		return nil, fail("append", err)
	}
	ncf, err := out.ConfigFile()
	if err != nil {
		return nil, fail("append", err)
	}
	ncf = ncf.DeepCopy()
	ncf.Created = v1.Time{Time: created.UTC()}
	ncf.OS, ncf.OSVersion, ncf.OSFeatures, ncf.Architecture, ncf.Variant = cf.OS, cf.OSVersion, cf.OSFeatures, cf.Architecture, cf.Variant
	if out, err = mutate.ConfigFile(out, ncf); err != nil {
		return nil, fail("append", err)
	}

	// Store the new blobs: the layer, the config, then the manifest.
	ld, err := layer.Digest()
	if err != nil {
		return nil, fail("compress layer", err)
	}
	lsize, _ := layer.Size()
	diffID, _ := layer.DiffID()
	err = s.content.put(ctx, v1.Descriptor{Digest: ld, Size: lsize}, func(ctx context.Context, off int64) (io.ReadCloser, int64, error) {
		rc, err := layer.Compressed()
		return rc, 0, err
	}, nil)
	if err != nil {
		return nil, fail("store layer", err)
	}
	rawCfg, err := out.RawConfigFile()
	if err != nil {
		return nil, err
	}
	cfgName, _ := out.ConfigName()
	if err := s.content.put(ctx, v1.Descriptor{Digest: cfgName, Size: int64(len(rawCfg))}, bytesOpener(rawCfg), nil); err != nil {
		return nil, fail("store config", err)
	}
	raw, err := out.RawManifest()
	if err != nil {
		return nil, err
	}
	md, _ := out.Digest()
	mt, _ := out.MediaType()
	desc := v1.Descriptor{MediaType: mt, Digest: md, Size: int64(len(raw)), Platform: d.Platform}
	if desc.Platform == nil {
		desc.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, OSVersion: cf.OSVersion, OSFeatures: cf.OSFeatures}
	}
	if err := s.content.put(ctx, desc, bytesOpener(raw), nil); err != nil {
		return nil, fail("store manifest", err)
	}

	// Unpack the new layer over the base's.
	key := ChainIDs(append(cf.RootFS.DiffIDs, diffID))[len(chain)].String()
	if ok, err := s.layers.HasLayer(ctx, key); err != nil {
		return nil, err
	} else if !ok {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		parent := ""
		if len(chain) > 0 {
			parent = chain[len(chain)-1].String()
		}
		if err := s.layers.ImportLayer(ctx, key, parent, cf.OS, diffID.String(), bufio.NewReaderSize(tmp, 1<<20)); err != nil {
			return nil, fail("unpack layer "+ld.String(), err)
		}
	}
	if err := s.content.setRef(spec.Name, desc); err != nil {
		return nil, err
	}
	return s.Inspect(ctx, spec.Name)
}

// windowsLayerTar writes the Windows layer tar of src (see AppendSpec.Layer) to w.
func (s *Store) windowsLayerTar(ctx context.Context, w io.Writer, src string, chain []v1.Hash) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		parents, err := s.parentFolders(ctx, chain)
		if err != nil {
			return err
		}
		ur, err := winlayer.NewUpperReader(ctx, src, parents)
		if err != nil {
			return err
		}
		defer ur.Close()
		return ociwclayer.EncodeTar(ctx, w, src, stableTimes{ur})
	}
	isWin, err := isWindowsLayerTar(src)
	if err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := compress.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	defer zr.Close()
	if isWin {
		// Taken as it is, once its entries pass the checks an import makes.
		if err := ociwclayer.ScanTar(ctx, io.TeeReader(zr, w), func(*winlayer.Entry) error { return nil }); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		_, err := io.Copy(w, zr)
		return err
	}
	// A plain tar of files: applied to a directory, then read as new files.
	dir, err := os.MkdirTemp(s.content.ingest, "append-dir-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := ocilayer.Apply(ctx, dir, zr, ocilayer.WithoutOwnership(), ocilayer.WithSkipDevices()); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return s.windowsLayerTar(ctx, w, dir, chain)
}

// linuxLayerTar writes the OCI Linux layer tar src (plain, gzip or zstd) to w as
// it is, uncompressed: a Linux layer needs no metadata added, and the store's
// import checks its entries (OCI semantics, nothing outside the layer).
func linuxLayerTar(w io.Writer, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%w: a Linux layer from a directory; give a tar of it", ErrUnsupported)
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := compress.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	defer zr.Close()
	if _, err := io.Copy(w, zr); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return nil
}

// stableTimes makes a directory's entries depend on their content and
// modification times only: a Linux access time changes when the file is read and
// a change time when it is touched, so both become the last write time, and a
// creation (birth) time later than the last write (a file copied or checked out
// after it was written) becomes the last write time too.
type stableTimes struct{ *winlayer.UpperReader }

func (r stableTimes) Next() (*winlayer.Entry, error) {
	e, err := r.UpperReader.Next()
	if err != nil || e == nil {
		return e, err
	}
	w := e.Info.LastWriteTime
	e.Info.LastAccessTime, e.Info.ChangeTime = w, w
	if e.Info.CreationTime > w {
		e.Info.CreationTime = w
	}
	return e, nil
}

// Scratch as AppendSpec.Base builds an image from no base: its first layer is the
// one appended (a Windows base layer tar, or a Linux root file system's tar).
const Scratch = "scratch"

// scratchImage is an empty OCI image for p, created at the Unix epoch.
func scratchImage(p v1.Platform) (v1.Image, error) {
	if p.OS != "windows" && p.OS != "linux" || p.Architecture == "" {
		return nil, fmt.Errorf("%w: building on scratch needs a windows (with os.version) or linux platform, not %q", ErrUnsupported, p.String())
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion, cf.OSFeatures = p.OS, p.Architecture, p.Variant, p.OSVersion, p.OSFeatures
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.RootFS.Type = "layers"
	return mutate.ConfigFile(img, cf)
}

// Commit makes the image name of the base image and the changes of the active
// layer key of the layer store (a container's writable layer over the base's top
// layer): Append with AppendSpec.FromKey.
func (s *Store) Commit(ctx context.Context, base, key, name string) (*Summary, error) {
	return s.Append(ctx, AppendSpec{Base: base, FromKey: key, Name: name})
}

// isWindowsLayerTar says whether the tar's first entry is under Files/, Hives/ or
// UtilityVM/, as every Windows layer tar's is.
func isWindowsLayerTar(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	zr, err := compress.NewReader(f)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	defer zr.Close()
	h, err := tar.NewReader(zr).Next()
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w: %v", path, ErrInvalid, err)
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/")
	first = strings.TrimSuffix(first, "/")
	for _, top := range []string{"Files", "Hives", "UtilityVM"} {
		if strings.EqualFold(first, top) {
			return true, nil
		}
	}
	return false, nil
}

// parentFolders gives the layer folders of chain, immediate parent (the last) first.
func (s *Store) parentFolders(ctx context.Context, chain []v1.Hash) ([]string, error) {
	lp, ok := s.layers.(LayerPather)
	if !ok {
		return nil, fmt.Errorf("%w: the layer store gives no layer folders to build new files' metadata from", ErrUnsupported)
	}
	var out []string
	for i := len(chain) - 1; i >= 0; i-- {
		p, err := lp.LayerPath(ctx, chain[i].String())
		if err != nil {
			return nil, err
		}
		out = append(out, filepath.Clean(p))
	}
	return out, nil
}
