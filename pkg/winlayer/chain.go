package winlayer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// chain is the view a union gives of read-only parent layers (immediate parent
// first): a name shows the topmost layer holding it, unless a layer above removed
// the name or one of its ancestors.
type chain struct {
	layers []chainLayer
}

type chainLayer struct {
	root  string
	store *metaStore // nil for a folder without metadata
}

// openChain opens the metadata of each parent layer for reading.
func openChain(parents []string) (*chain, error) {
	c := &chain{}
	for _, p := range parents {
		abs, err := filepath.Abs(p)
		if err != nil {
			c.close()
			return nil, &LayerError{Layer: p, Op: "open", Err: err}
		}
		if st, err := os.Stat(abs); err != nil {
			c.close()
			return nil, &LayerError{Layer: abs, Op: "open", Err: err}
		} else if !st.IsDir() {
			c.close()
			return nil, &LayerError{Layer: abs, Op: "open", Err: ErrNotLayer}
		}
		l := chainLayer{root: abs}
		if _, err := os.Stat(filepath.Join(abs, metaDB)); err == nil {
			if l.store, err = openStore(filepath.Join(abs, metaDB)); err != nil {
				c.close()
				return nil, &LayerError{Layer: abs, Op: "open", Err: err}
			}
		}
		c.layers = append(c.layers, l)
	}
	return c, nil
}

func (c *chain) close() {
	for _, l := range c.layers {
		if l.store != nil {
			l.store.close()
		}
	}
	c.layers = nil
}

// removes reports whether layer l removes name or one of its ancestors from the
// layers below it.
func (l *chainLayer) removes(name string) bool {
	if l.store == nil {
		return false
	}
	b := l.store.tx.Bucket(bucketWhiteouts)
	for n := name; n != "" && n != FilesDir; n = parentOf(n) {
		if b.Get(whiteoutKey(n)) != nil {
			return true
		}
	}
	return false
}

// lookup returns the entry the union shows at name, with its security descriptor,
// and the root of the layer holding it (where its alternate data streams are);
// nil when the union shows nothing there.
func (c *chain) lookup(name string) (*Entry, string, error) {
	for i := range c.layers {
		l := &c.layers[i]
		fi, err := os.Lstat(filepath.Join(l.root, filepath.FromSlash(name)))
		switch {
		case err == nil:
			e, implicit, err := l.entry(name, fi)
			if err != nil {
				return nil, "", &EntryError{Layer: l.root, Entry: name, Op: "read", Err: err}
			}
			if !implicit {
				return e, l.root, nil
			}
		case errors.Is(err, syscall.ENOTDIR):
			return nil, "", nil // an ancestor is a file here: it hides what is below
		case !errors.Is(err, fs.ErrNotExist):
			return nil, "", &EntryError{Layer: l.root, Entry: name, Op: "read", Err: err}
		}
		if l.removes(name) {
			return nil, "", nil
		}
	}
	return nil, "", nil
}

// entry returns layer l's metadata for name, which exists in its folder; implicit
// reports a directory the layer holds only for its children.
func (l *chainLayer) entry(name string, fi fs.FileInfo) (*Entry, bool, error) {
	var rec *record
	if l.store != nil {
		var err error
		if rec, err = l.store.get(name); err != nil {
			return nil, false, err
		}
	}
	if rec == nil || rec.entry.Name != name {
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ = os.Readlink(filepath.Join(l.root, filepath.FromSlash(name)))
		}
		return entryFromFileInfo(name, fi, target), false, nil
	}
	if rec.implicit && fi.IsDir() {
		return nil, true, nil
	}
	e := rec.entry.Clone()
	e.dataID = rec.dataID
	if rec.sdHash != nil {
		sd, err := l.store.sd(rec.sdHash)
		if err != nil {
			return nil, false, err
		}
		e.SecurityDescriptor = sd
	}
	if fi.Mode().IsRegular() {
		e.Size = fi.Size()
	}
	if fi.IsDir() {
		e.Info.FileAttributes |= 0x10
	}
	return e, false, nil
}

// list returns the base names the union shows directly inside the directory dir,
// sorted byte-wise.
func (c *chain) list(dir string) ([]string, error) {
	seen := map[string]bool{}
	for i := range c.layers {
		l := &c.layers[i]
		d, err := os.Open(filepath.Join(l.root, filepath.FromSlash(dir)))
		if err == nil {
			names, rerr := d.Readdirnames(-1)
			d.Close()
			if rerr != nil {
				return nil, &EntryError{Layer: l.root, Entry: dir, Op: "read", Err: rerr}
			}
			for _, n := range names {
				seen[n] = true
			}
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return nil, &EntryError{Layer: l.root, Entry: dir, Op: "read", Err: err}
		}
		if l.removes(dir) {
			break
		}
	}
	var out []string
	for n := range seen {
		e, _, err := c.lookup(dir + "/" + n)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
