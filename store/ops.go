package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func checkKey(key string) error {
	if key == "" {
		return classf(ErrInvalidArgument, "empty key")
	}
	if strings.IndexByte(key, 0) >= 0 {
		return classf(ErrInvalidArgument, "key %q holds a NUL byte", key)
	}
	return nil
}

// Prepare makes an active (writable) layer named key over the committed layer
// parent ("" for none) and returns the mounts that show it: mounted in order at
// one target, they give the parent's content, and what is written there is the
// layer's content. The layer takes the parent's format; a layer without a parent
// is FormatLinuxDir unless WithFormat says otherwise.
//
// It fails with ErrAlreadyExists when key is taken, ErrNotFound when parent does
// not exist and ErrFailedPrecondition when parent is not committed.
func (s *Store) Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	ms, err := s.create(ctx, KindActive, key, parent, opts)
	return ms, opErr("prepare", key, err)
}

// View makes a read-only view named key over the committed layer parent and
// returns its mounts. A view cannot be committed; Remove releases it.
func (s *Store) View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	ms, err := s.create(ctx, KindView, key, parent, opts)
	return ms, opErr("view", key, err)
}

func (s *Store) create(ctx context.Context, kind Kind, key, parent string, opts []Opt) ([]Mount, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	info := Info{Key: key, Parent: parent, Kind: kind}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	if info.DiffID != "" {
		return nil, classf(ErrInvalidArgument, "a diff ID is given on Commit or Import, not on %s", strings.ToLower(kind.String()))
	}
	var mounts []Mount
	// The record is written without waiting for the disk (see volatile.go).
	err := s.updateVolatile(ctx, func(tx *txn) error {
		lb, _, cb, _ := buckets(tx)
		if lb.Get([]byte(key)) != nil {
			return classf(ErrAlreadyExists, "layer %q exists", key)
		}
		top, parents, err := parentChain(tx, parent)
		if err != nil {
			return fmt.Errorf("parent %q: %w", parent, err)
		}
		if top != nil {
			if top.Kind != KindCommitted {
				return classf(ErrFailedPrecondition, "parent %q is %s, not committed", parent, top.Kind)
			}
			if info.Format != "" && info.Format != top.Format {
				return classf(ErrInvalidArgument, "format %s asked for over parent %q of format %s", info.Format, parent, top.Format)
			}
			info.Format = top.Format
		} else if info.Format == "" {
			info.Format = FormatLinuxDir
		}
		if info.Format != FormatLinuxDir && info.Format != FormatWindowsFolder {
			return classf(ErrUnsupported, "%s of a %s layer is not supported: its parents' disks would have to be attached and mounted for the union (directory formats only: %s, %s)", strings.ToLower(kind.String()), info.Format, FormatLinuxDir, FormatWindowsFolder)
		}
		id, err := newID(tx)
		if err != nil {
			return err
		}
		r := &record{ID: id, Info: info}
		r.Created = now()
		r.Updated = r.Created
		r.HasDir = kind == KindActive || len(parents) == 0 || info.Format == FormatWindowsFolder
		if r.HasDir {
			if err := s.makeLayerDir(r, parents, !tx.toVol); err != nil {
				return err
			}
		}
		if mounts, err = s.plan(r, parents); err != nil {
			return err
		}
		if err := putRecord(tx, r); err != nil {
			return err
		}
		if parent != "" {
			if err := cb.Put(childKey(parent, key), nil); err != nil {
				return err
			}
		}
		return nil
	})
	return mounts, err
}

// makeLayerDir makes layers/<id> and what the layer's mounts need in it. It is
// called under the exclusive lock, before the record is written: should the
// process die before the record is committed, the directory is unreferenced and
// the next reconcile removes it. With sync, the directory is made durable before
// the record; without, the record goes to the volatile file, and the fold that
// makes it durable syncs the directory first.
func (s *Store) makeLayerDir(r *record, parents []uint64, sync bool) error {
	dir := s.layerDir(r.ID)
	// The ID is new, so anything under its name was left by a process that died
	// before committing the same ID.
	if err := removeAllUnder(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	var subdirs []string
	switch {
	case r.Format == FormatWindowsFolder && r.Kind == KindActive:
		subdirs = []string{"upper", "work"}
	case r.Kind == KindActive:
		subdirs = []string{"fs", "work"}
	case len(parents) == 0:
		subdirs = []string{"fs"}
	}
	for _, d := range subdirs {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		// The upper directory's mode is the union's root's, so it is set whatever
		// the umask; overlayfs's work directory only has to exist.
		if d == "work" {
			continue
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	if r.Format == FormatWindowsFolder && len(parents) > 0 {
		if _, err := windowsLowers(parentPaths(s, parents), filepath.Join(dir, "whiteouts"), true); err != nil {
			return err
		}
	}
	if !sync {
		return nil
	}
	return syncDir(filepath.Dir(dir))
}

// parentPaths returns the content directories of the layers parents (IDs).
func parentPaths(s *Store, parents []uint64) []string {
	// One string holds them all, sliced: a hundred parents are a hundred
	// allocations otherwise, on every Prepare and View.
	prefix := s.layersPrefix()
	b := make([]byte, 0, len(parents)*(len(prefix)+len("/fs")+20))
	ends := make([]int, len(parents))
	for i, id := range parents {
		b = append(b, prefix...)
		b = strconv.AppendUint(b, id, 10)
		b = append(b, "/fs"...)
		ends[i] = len(b)
	}
	all := string(b)
	ps := make([]string, len(parents))
	start := 0
	for i, end := range ends {
		ps[i] = all[start:end]
		start = end
	}
	return ps
}

// Commit makes the committed layer name from the active layer key, which stops
// existing: name has key's parent, format and content, and the labels given in
// opts (WithDiffID records the content's digest). Unmount key's mounts first.
func (s *Store) Commit(ctx context.Context, name, key string, opts ...Opt) error {
	return opErr("commit", key, s.commit(ctx, name, key, opts))
}

func (s *Store) commit(ctx context.Context, name, key string, opts []Opt) error {
	if err := checkKey(name); err != nil {
		return err
	}
	info := Info{Key: name, Kind: KindCommitted}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	// Usage is measured before the write lock is taken, so that a large layer
	// does not hold up other processes; the commit checks that the layer it
	// measured is still the one under key.
	var id uint64
	var format Format
	var parents []*record
	err := s.view(ctx, func(tx *txn) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if err := committable(r); err != nil {
			return err
		}
		id, format = r.ID, r.Format
		parents, err = chain(tx, r.Parent)
		return err
	})
	if err != nil {
		return err
	}
	if format == FormatWindowsFolder {
		return s.commitWindows(ctx, name, key, id, parents, info)
	}
	u, err := diskUsage(ctx, filepath.Join(s.layerDir(id), "fs"))
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *txn) error {
		lb, ib, cb, _ := buckets(tx)
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if err := committable(r); err != nil {
			return err
		}
		if r.ID != id {
			return classf(ErrFailedPrecondition, "layer %q was replaced while being committed", key)
		}
		if name != key && lb.Get([]byte(name)) != nil {
			return classf(ErrAlreadyExists, "layer %q exists", name)
		}
		c := &record{ID: r.ID, HasDir: true, Info: info}
		c.Parent, c.Format = r.Parent, r.Format
		c.Size, c.Inodes = u.Size, u.Inodes
		c.Created = now()
		c.Updated = c.Created
		if c.DiffID != "" {
			if c.ChainID, err = chainID(tx, c.Parent, c.DiffID); err != nil {
				return err
			}
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
		return putRecord(tx, c)
	}, func() {
		// overlayfs's work directory is of no use to a committed layer.
		if err := os.RemoveAll(filepath.Join(s.layerDir(id), "work")); err != nil {
			s.log.Warn("removing the work directory of a committed layer", "layer", name, "error", err)
		}
	})
}

func committable(r *record) error {
	if r.Kind != KindActive {
		return classf(ErrFailedPrecondition, "layer %q is %s; only active layers can be committed", r.Key, r.Kind)
	}
	if r.Format != FormatLinuxDir && r.Format != FormatWindowsFolder {
		return classf(ErrUnsupported, "committing an active %s layer is not supported", r.Format)
	}
	return nil
}

// chainID derives the chain ID of a layer with diffID over parent: the diff ID
// itself for a base layer, else sha256 of "<parent chain ID> <diff ID>". It is
// empty when the parent's chain ID is not known.
func chainID(tx *txn, parent, diffID string) (string, error) {
	if parent == "" {
		return diffID, nil
	}
	p, err := getRecord(tx, parent)
	if err != nil {
		return "", err
	}
	if p.ChainID == "" {
		return "", nil
	}
	return digestOf([]byte(p.ChainID + " " + diffID)), nil
}

// Remove removes the layer key, of any kind, and its content. A layer that is
// the parent of others fails with ErrFailedPrecondition; unmount an active
// layer's or view's mounts first.
func (s *Store) Remove(ctx context.Context, key string) error {
	return opErr("remove", key, s.remove(ctx, key))
}

func (s *Store) remove(ctx context.Context, key string) error {
	var dir, trash string
	var hold *os.File
	defer func() {
		if hold != nil {
			hold.Close()
		}
	}()
	err := s.update(ctx, func(tx *txn) error {
		lb, ib, cb, _ := buckets(tx)
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if hasChildren(tx, key) {
			return classf(ErrFailedPrecondition, "layer %q is the parent of other layers; remove them first", key)
		}
		if r.HasDir {
			// An export holds a shared flock on the directory while it reads it;
			// the exclusive one taken here also keeps reconcile in other
			// processes off the directory once it is in the trash.
			dir = s.layerDir(r.ID)
			f, err := os.Open(dir)
			if err == nil {
				if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
					f.Close()
					if errors.Is(err, unix.EWOULDBLOCK) {
						return classf(ErrFailedPrecondition, "layer %q is being read (exported)", key)
					}
					return err
				}
				hold = f
				trash = filepath.Join(s.root, trashDir, fmt.Sprintf("%d-%s", r.ID, randomName()))
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := s.releaseMounts(tx, key); err != nil {
			return err
		}
		if err := lb.Delete([]byte(key)); err != nil {
			return err
		}
		if err := ib.Delete(idKey(r.ID)); err != nil {
			return err
		}
		if r.Kind == KindCommitted {
			if err := deleteChain(tx, r.ID); err != nil {
				return err
			}
		}
		if r.Parent != "" {
			if err := cb.Delete(childKey(r.Parent, key)); err != nil {
				return err
			}
		}
		return nil
	}, func() {
		// The record is gone: the directory is moved aside while the lock is
		// still held, so that no new layer can take its ID's name first.
		// Metadata goes first and files after; a crash in between leaves an
		// unreferenced directory for reconcile.
		if trash == "" {
			return
		}
		if err := os.Rename(dir, trash); err != nil {
			s.log.Warn("moving a removed layer to the trash", "layer", key, "path", dir, "error", err)
			trash = ""
		}
	})
	if err == nil && trash != "" {
		if rerr := removeAllUnder(trash); rerr != nil {
			s.log.Warn("deleting a removed layer", "layer", key, "path", trash, "error", rerr)
		}
	}
	return err
}
