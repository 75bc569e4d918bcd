package ext4

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

// Native mode: the same layout as compatibility mode, with the entry semantics of an
// OCI layer applied to an empty directory. A later entry replaces an earlier one of
// the same name whatever their types (its blocks are freed and zeroed), a hard link
// may replace a file, names that leave the root are refused, and implied directories
// get fixed attributes (see the package documentation).

func (w *writer) addNative(ctx context.Context, hdr *tar.Header, name, link string, data io.Reader, o *options) error {
	clean, err := cleanName(name)
	if err != nil {
		return err
	}
	var typ uint16
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		typ = sIFREG
	case tar.TypeLink:
	case tar.TypeSymlink:
		typ = sIFLNK
	case tar.TypeChar:
		typ = sIFCHR
	case tar.TypeBlock:
		typ = sIFBLK
	case tar.TypeDir:
		typ = sIFDIR
	case tar.TypeFifo:
		typ = sIFIFO
	case tar.TypeXGlobalHeader:
		return nil // PAX global records describe the archive, not a file
	default:
		return fmt.Errorf("%w: tar entry type %q", ErrUnsupported, hdr.Typeflag)
	}
	if o.convertWhiteouts {
		dir, file := path.Split(clean)
		if strings.HasPrefix(file, whiteoutPrefix) {
			if file == opaqueWhiteout {
				w.noteEntry("opaque", clean, "", nil)
				return w.nativeOpaque(clean)
			}
			target := file[len(whiteoutPrefix):]
			if target == "" || target == "." || target == ".." {
				return fmt.Errorf("%w: whiteout %q names no file", ErrInvalidTar, file)
			}
			w.noteEntry("whiteout", clean, "", nil)
			return w.nativeWhiteout(path.Join(dir, target))
		}
	}
	w.noteTime(hdr)
	if hdr.Typeflag == tar.TypeLink {
		target, err := cleanName(link)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		w.noteEntry("link", clean, target, nil)
		return w.nativeLink(target, clean)
	}
	a := entryAttrs(hdr, typ, link, false)
	libarchiveXattrs(hdr, a.xattrs)
	w.noteEntry("entry", clean, link, a)
	return w.nativeCreate(ctx, clean, a, data)
}

// noteEntry adds an entry to the hash the image UUID is derived from.
func (w *writer) noteEntry(kind, clean, link string, a *attrs) {
	h := w.entries
	fmt.Fprintf(h, "%s %q %q", kind, clean, link)
	if a != nil {
		fmt.Fprintf(h, " %o %d %d %d %d %d %d %d %d %d", a.mode, a.uid, a.gid, a.atime, a.ctime, a.mtime, a.size, a.devmajor, a.devminor, len(a.xattrs))
		for _, x := range sortedXattrs(a.xattrs) {
			fmt.Fprintf(h, " %d %q %q", x.index, x.name, x.value)
		}
	}
	h.Write([]byte{'\n'})
}

// libarchiveXattrs adds the attributes libarchive (bsdtar) records as
// "LIBARCHIVE.xattr.<URL-encoded name>" = base64 value, unless a SCHILY.xattr record
// (which bsdtar writes beside it for names it can) already gave them.
func libarchiveXattrs(hdr *tar.Header, m map[string][]byte) {
	const prefix = "LIBARCHIVE.xattr."
	for k, v := range hdr.PAXRecords {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		name, err := url.PathUnescape(k[len(prefix):])
		if err != nil {
			continue
		}
		if _, ok := m[name]; ok {
			continue
		}
		val, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
		if err != nil {
			continue
		}
		m[name] = val
	}
}

// noteTime keeps the latest modification time, given to implied directories.
func (w *writer) noteTime(hdr *tar.Header) {
	t := hdr.ModTime
	if t.IsZero() {
		return
	}
	if !w.haveTime || t.Unix() > w.maxTimeS || (t.Unix() == w.maxTimeS && fsTime(t.Unix(), int64(t.Nanosecond()), false)>>34 > w.maxTime>>34) {
		w.haveTime = true
		w.maxTimeS = t.Unix()
		w.maxTime = fsTime(t.Unix(), int64(t.Nanosecond()), false)
	}
}

// cleanName turns a tar name into a path relative to the root ("" is the root
// itself) with the layer rules' cleaning (ocilayer.CleanName); the rules have
// refused names that leave the root before an entry gets here.
func cleanName(name string) (string, error) {
	if strings.TrimLeft(name, "/") == "" {
		return "", nil
	}
	c, err := ocilayer.CleanName(name)
	if err != nil {
		return "", ruleError{err}
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// parents returns the directory that holds clean (not the root) and its last
// component, creating missing directories as implied ones.
func (w *writer) parents(clean string) (*inode, string, error) {
	d := w.root()
	rest := clean
	for {
		c, r := splitFirst(rest)
		if r == "" {
			return d, c, nil
		}
		rest = r
		ch := d.children[c]
		if ch != nil && ch.whiteout {
			// The layer removed c from the lower layers and now writes below it:
			// in overlay form that is an opaque directory.
			if err := w.replaceable(d, c); err != nil {
				return nil, "", err
			}
			ch = nil
			if err := w.opaqueImplied(d, c); err != nil {
				return nil, "", err
			}
			ch = d.children[c]
		}
		if ch == nil {
			if d.links >= maxLinks {
				return nil, "", fmt.Errorf("%w: directory has too many subdirectories", ErrTooLarge)
			}
			ch = w.newInode(sIFDIR | 0o755)
			ch.implied = true
			w.linkChild(d, c, ch)
		} else if !ch.isDir() {
			return nil, "", fmt.Errorf("%w: %s", ErrNotDir, strings.TrimSuffix(clean, "/"+rest))
		}
		d = ch
	}
}

// opaqueImplied makes c in d an implied directory that hides the lower layers'
// entries (it replaces a whiteout of the same layer).
func (w *writer) opaqueImplied(d *inode, c string) error {
	if d.links >= maxLinks {
		return fmt.Errorf("%w: directory has too many subdirectories", ErrTooLarge)
	}
	ch := w.newInode(sIFDIR | 0o755)
	ch.implied, ch.opaque = true, true
	w.linkChild(d, c, ch)
	return w.restoreXattrs(ch, map[string][]byte{})
}

// lookup finds the inode at clean, or nil.
func (w *writer) lookup(clean string) *inode {
	n := w.root()
	for rest := clean; rest != "" && n != nil; {
		var c string
		c, rest = splitFirst(rest)
		n = n.children[c]
	}
	return n
}

// replaceable removes the entry base of dir so that another can take its place.
func (w *writer) replaceable(dir *inode, base string) error {
	if dir == w.root() && base == "lost+found" {
		return fmt.Errorf("%w: lost+found must stay a directory", ErrConflict)
	}
	w.unlink(dir, base)
	return nil
}

func (w *writer) nativeCreate(ctx context.Context, clean string, a *attrs, data io.Reader) error {
	isDir := a.mode&typeMask == sIFDIR
	if clean == "" {
		if !isDir {
			return fmt.Errorf("%w: the root must be a directory", ErrConflict)
		}
		return w.updateDir(w.root(), a)
	}
	dir, base, err := w.parents(clean)
	if err != nil {
		return err
	}
	opaque := false
	if existing := dir.children[base]; existing != nil {
		if existing.isDir() && isDir {
			return w.updateDir(existing, a)
		}
		// A directory where the layer put a whiteout hides the lower layers' one.
		opaque = isDir && existing.whiteout
		if err := w.replaceable(dir, base); err != nil {
			return err
		}
	}
	if opaque {
		a.xattrs["trusted.overlay.opaque"] = []byte("y")
	}
	if isDir && dir.links >= maxLinks {
		return fmt.Errorf("%w: directory has too many subdirectories", ErrTooLarge)
	}
	typ := a.mode & typeMask
	var list []xattr
	n := w.newInode(a.mode)
	n.setAttrs(a)
	switch typ {
	case sIFREG:
		if a.size > w.maxFileSize {
			return fmt.Errorf("%w: file of %d bytes exceeds %d", ErrTooLarge, a.size, w.maxFileSize)
		}
		if a.size <= inlineDataMaxSize && w.inlineData {
			list = append(list, newXattr("system.data", make([]byte, max(a.size-inodeDataSize, 0))))
			n.flags |= flagInlineData
		}
	case sIFLNK:
		n.mode |= 0o777
		n.size = int64(len(a.linkname))
		if n.size <= smallSymlinkSize {
			n.iblock = []byte(a.linkname)
		}
	}
	xs, err := checkXattrs(a.xattrs)
	if err != nil {
		return err
	}
	inl, blk, err := w.placeNative(n, append(list, xs...))
	if err != nil {
		return err
	}
	if err := w.storeXattrs(n, inl, blk); err != nil {
		return err
	}
	w.linkChild(dir, base, n)
	switch {
	case typ == sIFLNK && n.size > smallSymlinkSize:
		return w.writeBlob(n, []byte(a.linkname))
	case typ == sIFREG:
		return w.writeFile(ctx, n, data, a.size)
	}
	return nil
}

// checkXattrs validates attribute names and sorts them. system.data is dropped: ext4
// reserves it for inline data.
func checkXattrs(m map[string][]byte) ([]xattr, error) {
	delete(m, "system.data")
	xs := sortedXattrs(m)
	for _, x := range xs {
		if x.name == "" || len(x.name) > 255 {
			return nil, fmt.Errorf("%w: invalid attribute name %q", ErrXattr, x.fullName())
		}
		if len(x.value) > maxXattrValue {
			return nil, fmt.Errorf("%w: %s has %d bytes, at most %d are allowed", ErrXattr, x.fullName(), len(x.value), maxXattrValue)
		}
	}
	return xs, nil
}

// updateDir gives an existing directory the attributes of a later entry.
func (w *writer) updateDir(d *inode, a *attrs) error {
	d.setAttrs(a)
	d.implied = false
	return w.restoreXattrs(d, a.xattrs)
}

// restoreXattrs replaces d's attributes with m (plus the opaque marker).
func (w *writer) restoreXattrs(d *inode, m map[string][]byte) error {
	if d.opaque {
		m["trusted.overlay.opaque"] = []byte("y")
	}
	xs, err := checkXattrs(m)
	if err != nil {
		return err
	}
	inl, blk, err := w.placeNative(d, xs)
	if err != nil {
		return err
	}
	return w.storeXattrs(d, inl, blk)
}

func (w *writer) nativeWhiteout(clean string) error {
	dir, base, err := w.parents(clean)
	if err != nil {
		return err
	}
	if dir.children[base] != nil {
		if err := w.replaceable(dir, base); err != nil {
			return err
		}
	}
	n := w.newInode(sIFCHR)
	n.whiteout = true
	w.linkChild(dir, base, n)
	return nil
}

func (w *writer) nativeOpaque(clean string) error {
	dir, _, err := w.parents(clean)
	if err != nil {
		return err
	}
	dir.opaque = true
	m := make(map[string][]byte)
	for _, x := range dir.inlineX() {
		m[x.fullName()] = x.value
	}
	for _, x := range dir.blockX() {
		m[x.fullName()] = x.value
	}
	return w.restoreXattrs(dir, m)
}

func (w *writer) nativeLink(target, clean string) error {
	t := w.lookup(target)
	if t == nil {
		return fmt.Errorf("%w: %s does not exist", ErrLinkTarget, target)
	}
	if t.isDir() {
		return fmt.Errorf("%w: %s is a directory", ErrLinkTarget, target)
	}
	if clean == "" {
		return fmt.Errorf("%w: a hard link cannot replace the root", ErrConflict)
	}
	dir, base, err := w.parents(clean)
	if err != nil {
		return err
	}
	existing := dir.children[base]
	if existing == t {
		return nil
	}
	if existing != nil {
		if err := w.replaceable(dir, base); err != nil {
			return err
		}
		if w.inodes[t.number-1] != t {
			return fmt.Errorf("%w: %s was removed by this link", ErrLinkTarget, target)
		}
	}
	if t.links >= maxLinks {
		return fmt.Errorf("%w: %s has too many links", ErrTooLarge, target)
	}
	w.linkChild(dir, base, t)
	return nil
}
