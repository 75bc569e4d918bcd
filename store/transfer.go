package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// Import reads a layer tar from r (plain, gzip or zstd) and stores it as the
// committed layer key over the committed layer parent ("" for a base layer).
// WithFormat says what the tar is: FormatLinuxDir (the default) for an OCI
// Linux layer, applied with pkg/ocilayer (through an overlay of the parents,
// so that its whiteouts become the union's); FormatWindowsFolder for an OCI
// Windows layer, written as a layer folder with pkg/ociwclayer. The layer's
// diff ID is the digest of the uncompressed tar; a diff ID given with WithDiffID
// must equal it. The chain ID is derived from the parent's.
//
// The layer is staged and becomes visible under key only complete and synced;
// on any error, cancellation or crash nothing of it remains (after the next
// Open for a crash). Errors in the tar name the entry and its offset.
func (s *Store) Import(ctx context.Context, key, parent string, r io.Reader, opts ...Opt) (Info, error) {
	info, err := s.importLayer(ctx, key, parent, r, opts)
	return info, opErr("import", key, err)
}

func (s *Store) importLayer(ctx context.Context, key, parent string, r io.Reader, opts []Opt) (Info, error) {
	if err := checkKey(key); err != nil {
		return Info{}, err
	}
	want := Info{Key: key, Parent: parent, Kind: KindCommitted}
	for _, o := range opts {
		if err := o(&want); err != nil {
			return Info{}, err
		}
	}
	if want.Format == "" {
		want.Format = FormatLinuxDir
	}
	if want.Format != FormatLinuxDir && want.Format != FormatWindowsFolder && want.Format != FormatExt4VHD {
		return Info{}, classf(ErrUnsupported, "importing a %s layer is not supported (%s, %s and %s are)", want.Format, FormatLinuxDir, FormatWindowsFolder, FormatExt4VHD)
	}
	var parents []*record
	err := s.view(ctx, func(tx *txn) error {
		lb, _, _, _ := buckets(tx)
		if lb.Get([]byte(key)) != nil {
			return classf(ErrAlreadyExists, "layer %q exists", key)
		}
		var err error
		parents, err = checkParent(tx, parent, want.Format)
		return err
	})
	if err != nil {
		return Info{}, err
	}
	st, err := s.stage(ctx)
	if err != nil {
		return Info{}, err
	}
	defer st.close()

	hash := sha256.New()
	dr, err := compress.NewReader(r)
	if err != nil {
		return Info{}, err
	}
	defer dr.Close()
	src := io.TeeReader(dr, hash)
	fsDir := filepath.Join(st.dir, "fs")
	switch want.Format {
	case FormatLinuxDir:
		err = s.applyLinux(ctx, st, key, fsDir, parentPaths(s, idsOf(parents)), src)
	case FormatWindowsFolder:
		_, err = ociwclayer.ImportLayerFromTar(ctx, src, fsDir, parentPaths(s, idsOf(parents)), winlayer.WithSync(false))
	case FormatExt4VHD:
		err = buildExt4VHD(ctx, fsDir, src)
	}
	if err != nil {
		return Info{}, err
	}
	// The digest covers the whole stream, padding after the tar's end included.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return Info{}, err
	}
	diffID := "sha256:" + hex.EncodeToString(hash.Sum(nil))
	if want.DiffID != "" && want.DiffID != diffID {
		return Info{}, classf(ErrInvalidArgument, "the tar's diff ID is %s, not %s as given", diffID, want.DiffID)
	}
	want.DiffID = diffID
	if err := syncFS(st.dir); err != nil {
		return Info{}, err
	}
	u, err := diskUsage(ctx, fsDir)
	if err != nil {
		return Info{}, err
	}
	want.Size, want.Inodes = u.Size, u.Inodes
	var out Info
	err = s.update(ctx, func(tx *txn) error {
		lb, _, cb, _ := buckets(tx)
		if lb.Get([]byte(key)) != nil {
			return classf(ErrAlreadyExists, "layer %q exists (made while this one was imported)", key)
		}
		if _, err := checkParent(tx, parent, want.Format); err != nil {
			return err
		}
		id, err := lb.NextSequence()
		if err != nil {
			return err
		}
		rec := &record{ID: id, HasDir: true, Info: want}
		rec.Created = now()
		rec.Updated = rec.Created
		if rec.ChainID, err = chainID(tx, parent, diffID); err != nil {
			return err
		}
		dir := s.layerDir(id)
		if err := removeAllUnder(dir); err != nil {
			return err
		}
		for _, leftover := range []string{"work", "merged"} {
			if err := os.RemoveAll(filepath.Join(st.dir, leftover)); err != nil {
				return err
			}
		}
		if err := deleteMountRecord(tx, st.mergedDir()); err != nil {
			return err
		}
		if err := os.Rename(st.dir, dir); err != nil {
			return err
		}
		st.dir = dir // the flock goes with the directory; nothing to remove any more
		if err := syncDir(s.path(layersDir)); err != nil {
			return err
		}
		if err := putRecord(tx, rec); err != nil {
			return err
		}
		if parent != "" {
			if err := cb.Put(childKey(parent, key), nil); err != nil {
				return err
			}
		}
		out = rec.Info
		return nil
	}, st.settled)
	if err != nil {
		return Info{}, err
	}
	return out, nil
}

func checkParent(tx *txn, parent string, format Format) ([]*record, error) {
	parents, err := chain(tx, parent)
	if err != nil {
		return nil, fmt.Errorf("parent %q: %w", parent, err)
	}
	if len(parents) > 0 {
		if parents[0].Kind != KindCommitted {
			return nil, classf(ErrFailedPrecondition, "parent %q is %s, not committed", parent, parents[0].Kind)
		}
		if parents[0].Format != format {
			return nil, classf(ErrInvalidArgument, "a %s layer cannot go over parent %q of format %s", format, parent, parents[0].Format)
		}
	}
	return parents, nil
}

// applyLinux applies an OCI Linux layer to fsDir. Over parents it goes through
// an overlay mounted at the staging directory's merged/, so that what the layer
// removes from its parents is recorded as overlay whiteouts in fsDir.
func (s *Store) applyLinux(ctx context.Context, st *staging, key, fsDir string, parents []string, r io.Reader) error {
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return err
	}
	if len(parents) == 0 {
		_, err := ocilayer.Apply(ctx, fsDir, r)
		return err
	}
	work, merged := filepath.Join(st.dir, "work"), st.mergedDir()
	for _, d := range []string{work, merged} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	// The record comes first, so that a process killed with the union mounted
	// leaves a record of it for reconcile.
	if err := s.update(ctx, func(tx *txn) error { return addMountRecord(tx, key, merged) }, nil); err != nil {
		return err
	}
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{"workdir=" + work, "upperdir=" + fsDir, "lowerdir=" + joinLowers(parents)}}
	undo, err := MountAll(ctx, []Mount{m}, merged)
	if err != nil {
		return err
	}
	_, err = ocilayer.Apply(ctx, merged, r)
	if uerr := undo.Release(context.WithoutCancel(ctx)); err == nil {
		err = uerr
	}
	return err
}

// staging is a directory under staging/ that one process fills; it holds an
// exclusive flock on it, so reconcile in other processes leaves it alone.
type staging struct {
	s    *Store
	dir  string
	lock *os.File
	done bool
}

func (x *staging) mergedDir() string { return filepath.Join(x.dir, "merged") }

// stage makes a staging directory. It is made and locked under the store's
// exclusive lock, so no reconcile can see it unlocked.
func (s *Store) stage(ctx context.Context) (*staging, error) {
	x := &staging{s: s}
	err := s.update(ctx, func(*txn) error {
		dir := s.path(stagingDir, randomName())
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		f, err := tryLock(dir)
		if err != nil {
			return err
		}
		if f == nil {
			return fmt.Errorf("staging directory %s is locked by another process", dir)
		}
		x.dir, x.lock = dir, f
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return x, nil
}

// settled marks the staged directory as a layer (its record is committed) and
// drops its flock at once, still under the store's lock, so that the new layer
// can be removed right away.
func (x *staging) settled() {
	x.done = true
	x.lock.Close()
	x.lock = nil
}

// close removes the staging directory unless it became a layer, and drops the
// mount record of its union, if any.
func (x *staging) close() {
	if !x.done {
		if err := removeAllUnder(x.dir); err != nil {
			x.s.log.Warn("removing a staging directory", "path", x.dir, "error", err)
		}
		merged := x.mergedDir()
		err := x.s.update(context.Background(), func(tx *txn) error { return deleteMountRecord(tx, merged) }, nil)
		if err != nil {
			x.s.log.Warn("deleting a mount record", "path", merged, "error", err)
		}
	}
	if x.lock != nil {
		x.lock.Close()
	}
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// Export writes the layer key as a tar to w: a committed layer's content, or
// the changes made so far in an active layer (for FormatLinuxDir the overlay
// upper directory, as an OCI layer with whiteouts and opaque markers). Windows
// layer folders are written as OCI Windows layer tars. A view has no changes
// (ErrFailedPrecondition). The layer cannot be removed while it is exported.
func (s *Store) Export(ctx context.Context, w io.Writer, key string) error {
	return opErr("export", key, s.export(ctx, w, key))
}

func (s *Store) export(ctx context.Context, w io.Writer, key string) error {
	var r *record
	var parents []*record
	var hold *os.File
	err := s.view(ctx, func(tx *txn) error {
		var err error
		if r, err = getRecord(tx, key); err != nil {
			return err
		}
		if r.Kind == KindView {
			return classf(ErrFailedPrecondition, "layer %q is a view, which has no changes to export", key)
		}
		if parents, err = chain(tx, r.Parent); err != nil {
			return err
		}
		// A shared flock on the directory, taken under the store's lock, keeps
		// Remove from deleting it under the export.
		f, err := os.Open(s.layerDir(r.ID))
		if err != nil {
			return err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return classf(ErrNotFound, "layer %q is being removed", key)
			}
			return err
		}
		hold = f
		return nil
	})
	if err != nil {
		return err
	}
	defer hold.Close()
	switch r.Format {
	case FormatLinuxDir:
		return ocilayer.Diff(ctx, w, s.upperDir(r))
	case FormatExt4VHD:
		return s.exportExt4(ctx, w, r)
	case FormatWindowsFolder:
		if r.Kind == KindActive {
			return ociwclayer.ExportUpperToTar(ctx, w, s.upperDir(r), parentPaths(s, idsOf(parents)))
		}
		return ociwclayer.ExportLayerToTar(ctx, w, filepath.Join(s.layerDir(r.ID), "fs"), parentPaths(s, idsOf(parents)))
	}
	return classf(ErrUnsupported, "exporting a %s layer is not supported", r.Format)
}

// commitWindows commits an active Windows layer: its upper directory is turned
// into a layer folder over the same parents (through the OCI Windows tar that
// Export gives, whose digest becomes the diff ID), staged, and swapped for the
// active layer in one transaction. The new layer has a new directory; the
// active one's goes to the trash.
func (s *Store) commitWindows(ctx context.Context, name, key string, id uint64, parents []*record, info Info) error {
	st, err := s.stage(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	upper := filepath.Join(s.layerDir(id), "upper")
	folders := parentPaths(s, idsOf(parents))
	pr, pw := io.Pipe()
	hash := sha256.New()
	go func() {
		pw.CloseWithError(ociwclayer.ExportUpperToTar(ctx, io.MultiWriter(pw, hash), upper, folders))
	}()
	fsDir := filepath.Join(st.dir, "fs")
	_, err = ociwclayer.ImportLayerFromTar(ctx, pr, fsDir, folders, winlayer.WithSync(false))
	pr.CloseWithError(err)
	if err != nil {
		return err
	}
	diffID := "sha256:" + hex.EncodeToString(hash.Sum(nil))
	if info.DiffID != "" && info.DiffID != diffID {
		return classf(ErrInvalidArgument, "the layer's diff ID is %s, not %s as given", diffID, info.DiffID)
	}
	info.DiffID = diffID
	if err := syncFS(st.dir); err != nil {
		return err
	}
	u, err := diskUsage(ctx, fsDir)
	if err != nil {
		return err
	}
	var old string
	err = s.update(ctx, func(tx *txn) error {
		lb, ib, cb, _ := buckets(tx)
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if r.ID != id || r.Kind != KindActive {
			return classf(ErrFailedPrecondition, "layer %q was replaced while being committed", key)
		}
		if name != key && lb.Get([]byte(name)) != nil {
			return classf(ErrAlreadyExists, "layer %q exists", name)
		}
		nid, err := lb.NextSequence()
		if err != nil {
			return err
		}
		c := &record{ID: nid, HasDir: true, Info: info}
		c.Parent, c.Format = r.Parent, r.Format
		c.Size, c.Inodes = u.Size, u.Inodes
		c.Created = now()
		c.Updated = c.Created
		if c.ChainID, err = chainID(tx, c.Parent, c.DiffID); err != nil {
			return err
		}
		dir := s.layerDir(nid)
		if err := removeAllUnder(dir); err != nil {
			return err
		}
		if err := os.Rename(st.dir, dir); err != nil {
			return err
		}
		st.dir = dir
		if err := syncDir(s.path(layersDir)); err != nil {
			return err
		}
		if err := lb.Delete([]byte(key)); err != nil {
			return err
		}
		if err := ib.Delete(idKey(r.ID)); err != nil {
			return err
		}
		if r.Parent != "" {
			if err := cb.Delete(childKey(r.Parent, key)); err != nil {
				return err
			}
			if err := cb.Put(childKey(r.Parent, name), nil); err != nil {
				return err
			}
		}
		old = s.layerDir(r.ID)
		return putRecord(tx, c)
	}, func() {
		st.settled()
		trash := filepath.Join(s.root, trashDir, fmt.Sprintf("%d-%s", id, randomName()))
		if err := os.Rename(old, trash); err == nil {
			old = trash
		}
	})
	if err != nil {
		return err
	}
	if err := removeAllUnder(old); err != nil {
		s.log.Warn("deleting the active layer a commit replaced", "layer", key, "path", old, "error", err)
	}
	return nil
}
