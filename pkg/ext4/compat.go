package ext4

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
)

// This file maps tar entries the way hcsshim's tar2ext4 and compactext4 (v0.13.0) do,
// step for step, so that compatibility mode allocates inodes and blocks in the same
// order and so writes the same bytes. Where compactext4 fails, so does this.

func (w *writer) addCompat(ctx context.Context, hdr *tar.Header, name, link string, data io.Reader, o *options) error {
	if err := w.compatMakeParents(ctx, name); err != nil {
		return err
	}
	if o.convertWhiteouts {
		dir, file := path.Split(name)
		if strings.HasPrefix(file, whiteoutPrefix) {
			if file == opaqueWhiteout {
				return w.compatOpaque(ctx, dir)
			}
			return w.compatCreate(ctx, path.Join(dir, file[len(whiteoutPrefix):]), &attrs{mode: sIFCHR}, nil)
		}
	}
	if hdr.Typeflag == tar.TypeLink {
		return w.compatLink(link, name)
	}
	var typ uint16
	switch hdr.Typeflag {
	case tar.TypeReg:
		typ = sIFREG
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
	}
	return w.compatCreate(ctx, name, entryAttrs(hdr, typ, link, true), data)
}

// compatLookup finds the directory that holds name, the inode at name (nil if none)
// and the last name component.
func (w *writer) compatLookup(name string, mustExist bool) (dir, child *inode, base string, err error) {
	root := w.root()
	clean := path.Clean("/" + name)[1:]
	if clean == "" {
		return root, root, "", nil
	}
	dirname, base := path.Split(clean)
	if len(base) > 255 {
		return nil, nil, "", fmt.Errorf("%w: name component longer than 255 bytes", ErrInvalidTar)
	}
	dir = root
	for dir != nil && dirname != "" {
		var c string
		c, dirname = splitFirst(dirname)
		dir = dir.children[c]
	}
	if dir == nil || !dir.isDir() {
		return nil, nil, "", fmt.Errorf("%w: %s: path not found", ErrNotDir, name)
	}
	child = dir.children[base]
	if child == nil && mustExist {
		return nil, nil, "", fmt.Errorf("%w: %s: file not found", ErrLinkTarget, name)
	}
	return dir, child, base, nil
}

// compatMakeParents creates missing parent directories with the attributes of their
// own parent, as compactext4's MakeParents does.
func (w *writer) compatMakeParents(ctx context.Context, name string) error {
	clean := path.Clean("/" + name)[1:]
	rest, _ := path.Split(clean)
	cur := ""
	d := w.root()
	for rest != "" {
		var c string
		c, rest = splitFirst(rest)
		cur += "/" + c
		if _, ok := d.children[c]; !ok {
			a := &attrs{
				mode: d.mode, uid: d.uid, gid: d.gid,
				atime: roundTripTime(d.atime), mtime: roundTripTime(d.mtime),
				ctime: roundTripTime(d.ctime), crtime: roundTripTime(d.crtime),
				xattrs: make(map[string][]byte),
			}
			a.devmajor, a.devminor = d.dev()
			if err := w.compatCreate(ctx, cur, a, nil); err != nil {
				return fmt.Errorf("creating parent directories: %w", err)
			}
		}
		d = d.children[c]
	}
	return nil
}

func (w *writer) compatCreate(ctx context.Context, name string, a *attrs, data io.Reader) error {
	dir, existing, base, err := w.compatLookup(name, false)
	if err != nil {
		return err
	}
	isDir := a.mode&typeMask == sIFDIR
	var reuse *inode
	if existing != nil {
		switch {
		case existing.isDir():
			if !isDir {
				return fmt.Errorf("%w: %s: cannot replace a directory with a file", ErrConflict, name)
			}
			reuse = existing
		case isDir:
			return fmt.Errorf("%w: %s: cannot replace a file with a directory", ErrConflict, name)
		case existing.links < 2:
			reuse = existing
		}
	} else if isDir && dir.links >= maxLinks {
		return fmt.Errorf("%w: %s: parent directory has too many links", ErrTooLarge, name)
	}
	n, err := w.compatMakeInode(a, reuse)
	if err != nil {
		return err
	}
	if existing != n {
		if existing != nil {
			existing.links--
		}
		w.linkChild(dir, base, n)
	}
	if n.mode&typeMask == sIFREG {
		if data == nil && a.size != 0 {
			return fmt.Errorf("%w: %s: no data for a file of %d bytes", ErrConflict, name, a.size)
		}
		return w.writeFile(ctx, n, data, a.size)
	}
	return nil
}

// compatMakeInode sets up a new inode (n == nil) or rewrites a reused one.
func (w *writer) compatMakeInode(a *attrs, n *inode) (*inode, error) {
	mode := a.mode
	if mode&typeMask == 0 {
		mode |= sIFREG
	}
	typ := mode & typeMask
	isNew := n == nil
	if isNew {
		n = &inode{number: uint32(len(w.inodes) + 1)}
		if typ == sIFDIR {
			n.children = make(map[string]*inode)
			n.links = 1
		}
	} else if n.flags&flagExtents != 0 {
		// compactext4 cannot free blocks, so it refuses to replace data.
		return nil, fmt.Errorf("%w: cannot overwrite file with non-inline data", ErrConflict)
	}
	n.setAttrs(a)
	n.mode = mode
	n.flags = flagHugeFile
	n.iblock = nil
	if n.x != nil {
		n.x.inline = nil
	}
	xattrs := a.xattrs
	if xattrs == nil {
		xattrs = make(map[string][]byte)
	}
	// The attributes stored in the inode body survive a rewrite unless replaced; those
	// in the block do not.
	existing := make(map[string][]byte)
	for _, x := range n.inlineX() {
		existing[x.fullName()] = x.value
	}
	if n.x != nil {
		n.x.inlineX = nil
	}

	var list []xattr
	var size int64
	switch typ {
	case sIFREG:
		size = a.size
		if size > w.maxFileSize {
			return nil, fmt.Errorf("%w: file of %d bytes exceeds %d", ErrTooLarge, size, w.maxFileSize)
		}
		if size <= inlineDataMaxSize && w.inlineData {
			extra := max(size-inodeDataSize, 0)
			list = append(list, newXattr("system.data", make([]byte, extra)))
			n.flags |= flagInlineData
		}
	case sIFLNK:
		n.mode |= 0o777
		size = int64(len(a.linkname))
		if size <= smallSymlinkSize {
			n.iblock = []byte(a.linkname)
		}
	case sIFDIR, sIFIFO, sIFSOCK, sIFCHR, sIFBLK:
	default:
		return nil, fmt.Errorf("%w: invalid mode %o", ErrUnsupported, mode)
	}
	for name, v := range existing {
		if _, ok := xattrs[name]; !ok {
			xattrs[name] = v
		}
	}
	list = append(list, sortedXattrs(xattrs)...)
	inl, blk, err := placeXattrs(list)
	if err != nil {
		return nil, err
	}
	if err := w.storeXattrs(n, inl, blk); err != nil {
		return nil, err
	}
	n.size = size
	if typ == sIFLNK && size > smallSymlinkSize {
		if err := w.writeBlob(n, []byte(a.linkname)); err != nil {
			return nil, err
		}
	}
	if isNew {
		w.inodes = append(w.inodes, n)
	}
	return n, nil
}

// compatOpaque marks dir opaque the way tar2ext4 does: it stats the directory and
// creates it again with the attribute added.
func (w *writer) compatOpaque(ctx context.Context, dir string) error {
	_, n, _, err := w.compatLookup(dir, true)
	if err != nil {
		return err
	}
	a := &attrs{
		mode: n.mode, uid: n.uid, gid: n.gid, size: n.size,
		atime: roundTripTime(n.atime), ctime: roundTripTime(n.ctime),
		mtime: roundTripTime(n.mtime), crtime: roundTripTime(n.crtime),
		xattrs: make(map[string][]byte),
	}
	a.devmajor, a.devminor = n.dev()
	for _, x := range n.blockX() {
		a.xattrs[x.fullName()] = x.value
	}
	if len(n.inlineX()) != 0 {
		for _, x := range n.inlineX() {
			a.xattrs[x.fullName()] = x.value
		}
		delete(a.xattrs, "system.data")
	}
	if n.mode&typeMask == sIFLNK {
		if n.size > smallSymlinkSize {
			return fmt.Errorf("%w: %s: cannot retrieve link information", ErrConflict, dir)
		}
		a.linkname = string(n.iblock)
	}
	a.xattrs["trusted.overlay.opaque"] = []byte("y")
	return w.compatCreate(ctx, dir, a, nil)
}

func (w *writer) compatLink(oldname, newname string) error {
	newdir, existing, base, err := w.compatLookup(newname, false)
	if err != nil {
		return err
	}
	if existing != nil && (existing.isDir() || existing.links < 2) {
		return fmt.Errorf("%w: %s: cannot orphan existing file or directory", ErrConflict, newname)
	}
	_, old, _, err := w.compatLookup(oldname, true)
	if err != nil {
		return err
	}
	if old.isDir() {
		return fmt.Errorf("%w: %s: link target cannot be a directory: %s", ErrLinkTarget, newname, oldname)
	}
	if existing != old && old.links >= maxLinks {
		return fmt.Errorf("%w: %s: link target would exceed maximum link count", ErrTooLarge, newname)
	}
	if existing != nil {
		existing.links--
	}
	old.links++
	newdir.children[base] = old
	return nil
}
