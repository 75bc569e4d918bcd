package cim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// Abort discards the layer being written; nothing of it stays visible.
func (cw *CimLayerWriter) Abort() { cw.abort() }

// EntryWriter returns the writer as a sink of winlayer entries (the shape of
// ociwclayer.EntryWriter and of winlayer.Writer), for conversions from tars and layer
// folders.
func (cw *CimLayerWriter) EntryWriter() *LayerEntryWriter { return &LayerEntryWriter{cw: cw} }

// LayerEntryWriter adds winlayer entries to a CimLayerWriter.
type LayerEntryWriter struct{ cw *CimLayerWriter }

// Add adds an entry; e.Size bytes of data follow through Write. Backup streams that
// have no place in a CIM (e.RawStreams) are refused.
func (ew *LayerEntryWriter) Add(e *winlayer.Entry) error {
	cw := ew.cw
	if err := cw.ready(); err != nil {
		return err
	}
	if len(e.RawStreams) > 0 {
		return cw.fail(&winlayer.EntryError{Layer: cw.path, Entry: e.Name, Op: "add", Err: fmt.Errorf("%w: %s backup stream has no place in a CIM", winlayer.ErrNotSupported, e.RawStreams[0].ID)})
	}
	clean, err := cw.v.Add(e)
	if err != nil {
		return cw.fail(cw.entryErr("add", e.Name, err))
	}
	var ea []byte
	if len(e.ExtendedAttributes) > 0 {
		if ea, err = winfile.EncodeExtendedAttributes(e.ExtendedAttributes); err != nil {
			return cw.fail(&winlayer.EntryError{Layer: cw.path, Entry: e.Name, Op: "add", Err: err})
		}
	}
	h := &cimfs.Header{Name: clean, Info: e.Info, Size: e.Size, NoDataStream: e.NoDataStream,
		SecurityDescriptor: e.SecurityDescriptor, ExtendedAttributes: ea, ReparseData: e.Reparse}
	if e.IsDir() {
		h.Size, h.NoDataStream = 0, false
	}
	if err := cw.w.Add(h); err != nil {
		return cw.fail(err)
	}
	cw.current = clean
	if err := cw.note(clean, h); err != nil {
		return cw.fail(err)
	}
	return nil
}

// AddStream starts an alternate data stream (":name" or ":name:$DATA") of the entry
// added last.
func (ew *LayerEntryWriter) AddStream(name string, size int64, attributes uint32) error {
	cw := ew.cw
	if err := cw.ready(); err != nil {
		return err
	}
	if err := cw.closeTee(); err != nil {
		return cw.fail(err)
	}
	if _, err := cw.v.AddStream(name, size); err != nil {
		return cw.fail(cw.entryErr("stream", cw.current+":"+strings.TrimPrefix(name, ":"), err))
	}
	if err := cw.w.AddStream(name, size); err != nil {
		return cw.fail(err)
	}
	return nil
}

// AddLink adds a hard link.
func (ew *LayerEntryWriter) AddLink(name, target string) error { return ew.cw.AddLink(name, target) }

// Remove records a removal.
func (ew *LayerEntryWriter) Remove(name string) error { return ew.cw.Remove(name) }

// Write writes data of the current stream.
func (ew *LayerEntryWriter) Write(p []byte) (int, error) { return ew.cw.Write(p) }

// LayerReader reads a CIM layer's own entries as winlayer entries, in the order and
// form a winlayer.Reader gives for the same layer in folder form: Files/, Hives/,
// UtilityVM/, each directory before its children, children in byte-wise name order,
// the names a directory removes right after it, alternate streams listed on their
// file, later names of a hard-linked file as LinkTarget entries. Entries inherited
// from parent layers are not returned. It is not safe for concurrent use.
type LayerReader struct {
	ctx   context.Context
	im    *cimfs.Image
	own   bool
	stack []*readFrame
	links map[cimfs.FileID]string
	// parentLinks maps the folded names the layer added as hard links to
	// inherited files to their targets (slash separated).
	parentLinks map[string]string
	cur         *winlayer.Entry
	curID       cimfs.FileID
	err         error
}

type readFrame struct {
	dir       string
	children  []readChild
	whiteouts []string
}

type readChild struct {
	name string
	id   cimfs.FileID // 0: a folder that exists only to hold removals
	rm   *removalNode
}

// removalNode is one level of the tree of removed paths.
type removalNode struct {
	name     string
	full     string // set when this path itself is removed
	children map[string]*removalNode
}

// NewLayerReader opens the CIM layer at layerPath.
func NewLayerReader(ctx context.Context, layerPath string) (*LayerReader, error) {
	im, err := OpenLayer(layerPath)
	if err != nil {
		return nil, err
	}
	r, err := newLayerReader(ctx, im)
	if err != nil {
		im.Close()
		return nil, err
	}
	r.own = true
	return r, nil
}

// NewImageReader reads the entries of an open image (not closed by Close).
func NewImageReader(ctx context.Context, im *cimfs.Image) (*LayerReader, error) {
	return newLayerReader(ctx, im)
}

func newLayerReader(ctx context.Context, im *cimfs.Image) (*LayerReader, error) {
	rms, err := im.Removals()
	if err != nil {
		return nil, err
	}
	root := &removalNode{children: map[string]*removalNode{}}
	for _, p := range rms {
		p = toSlash(p)
		n := root
		for _, c := range strings.Split(p, "/") {
			k := foldName(c)
			next := n.children[k]
			if next == nil {
				next = &removalNode{name: c, children: map[string]*removalNode{}}
				n.children[k] = next
			}
			n = next
		}
		n.full = p
	}
	r := &LayerReader{ctx: ctx, im: im, links: map[cimfs.FileID]string{}, parentLinks: map[string]string{}}
	pls, err := im.Links()
	if err != nil {
		return nil, err
	}
	for _, l := range pls {
		r.parentLinks[foldName(toSlash(l[0]))] = toSlash(l[1])
	}
	top := &readFrame{}
	rootEnts, err := im.ReadDirID(im.Root())
	if err != nil {
		return nil, err
	}
	for _, n := range []string{winlayer.FilesDir, winlayer.HivesDir, winlayer.UtilityVMDir} {
		c := readChild{name: n, rm: root.children[foldName(n)]}
		for _, e := range rootEnts {
			if e.Name == n {
				c.id = e.ID
			}
		}
		if c.id != 0 {
			if fi, err := im.StatID(c.id); err != nil || !fi.IsDir() {
				c.id = 0
			}
		}
		if c.id != 0 || c.rm != nil {
			top.children = append(top.children, c)
		}
	}
	r.stack = []*readFrame{top}
	return r, nil
}

// foldName folds a name for case-insensitive comparison as winlayer does.
func foldName(n string) string {
	return strings.Map(func(r rune) rune {
		if r > 0xFFFF {
			return r
		}
		return unicode.ToUpper(r)
	}, n)
}

// Close releases the reader (and the image if the reader opened it).
func (r *LayerReader) Close() error {
	if r.own {
		return r.im.Close()
	}
	return nil
}

// Next advances to the next entry; io.EOF at the end.
func (r *LayerReader) Next() (*winlayer.Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return e, nil
}

func (r *LayerReader) next() (*winlayer.Entry, error) {
	r.cur, r.curID = nil, 0
	for len(r.stack) > 0 {
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		f := r.stack[len(r.stack)-1]
		if len(f.whiteouts) > 0 {
			n := f.whiteouts[0]
			f.whiteouts = f.whiteouts[1:]
			return &winlayer.Entry{Name: n, Removed: true}, nil
		}
		if len(f.children) == 0 {
			r.stack = r.stack[:len(r.stack)-1]
			continue
		}
		c := f.children[0]
		f.children = f.children[1:]
		name := c.name
		if f.dir != "" {
			name = f.dir + "/" + c.name
		}
		var fi *cimfs.FileInfo
		if c.id != 0 {
			var err error
			if fi, err = r.im.StatID(c.id); err != nil {
				return nil, &winlayer.EntryError{Layer: r.im.Name(), Entry: name, Op: "read", Err: err}
			}
		}
		if fi == nil || fi.IsDir() {
			nf, err := r.frame(name, c, fi)
			if err != nil {
				return nil, &winlayer.EntryError{Layer: r.im.Name(), Entry: name, Op: "read", Err: err}
			}
			r.stack = append(r.stack, nf)
		}
		if fi == nil {
			continue
		}
		parentLink, linked := r.parentLinks[foldName(name)]
		if !fi.Added && (!linked || fi.IsDir()) {
			continue
		}
		e, err := r.entry(name, fi)
		if err != nil {
			return nil, &winlayer.EntryError{Layer: r.im.Name(), Entry: name, Op: "read", Err: err}
		}
		if !fi.Added && e.LinkTarget == "" {
			e.ParentLink = parentLink
		}
		r.cur, r.curID = e, c.id
		return e, nil
	}
	return nil, io.EOF
}

// frame lists a directory's children merged with the folders that only hold
// removals, in byte-wise order, and the removals directly inside it.
func (r *LayerReader) frame(name string, c readChild, fi *cimfs.FileInfo) (*readFrame, error) {
	nf := &readFrame{dir: name}
	real := map[string]bool{}
	if fi != nil {
		ents, err := r.im.ReadDirID(fi.ID)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			ch := readChild{name: e.Name, id: e.ID}
			if c.rm != nil {
				ch.rm = c.rm.children[foldName(e.Name)]
			}
			real[foldName(e.Name)] = true
			nf.children = append(nf.children, ch)
		}
	}
	if c.rm != nil {
		type wo struct{ key, name string }
		var wos []wo
		for k, rn := range c.rm.children {
			if rn.full != "" {
				wos = append(wos, wo{k, rn.full})
			}
			if !real[k] && len(rn.children) > 0 {
				nf.children = append(nf.children, readChild{name: rn.name, rm: rn})
			}
		}
		slices.SortFunc(wos, func(a, b wo) int { return strings.Compare(a.key, b.key) })
		for _, w := range wos {
			nf.whiteouts = append(nf.whiteouts, w.name)
		}
	}
	slices.SortFunc(nf.children, func(a, b readChild) int { return strings.Compare(a.name, b.name) })
	return nf, nil
}

func (r *LayerReader) entry(name string, fi *cimfs.FileInfo) (*winlayer.Entry, error) {
	e := &winlayer.Entry{Name: name, Info: fi.Info, Size: fi.Size, NoDataStream: fi.NoDataStream}
	if !fi.IsDir() {
		if first, ok := r.links[fi.ID]; ok {
			e.LinkTarget = first
		} else {
			r.links[fi.ID] = name
		}
	}
	var err error
	if e.SecurityDescriptor, err = fi.SecurityDescriptor(); err != nil {
		return nil, err
	}
	ea, err := fi.ExtendedAttributes()
	if err != nil {
		return nil, err
	}
	if len(ea) > 0 {
		if e.ExtendedAttributes, err = winfile.DecodeExtendedAttributes(ea); err != nil {
			return nil, err
		}
	}
	if e.Reparse, err = fi.ReparseData(); err != nil {
		return nil, err
	}
	for _, s := range fi.Streams {
		e.Streams = append(e.Streams, winlayer.Stream{Name: ":" + s.Name + ":$DATA", Size: s.Size})
	}
	return e, nil
}

// ReadDataInto reads the current entry's whole unnamed data stream into p.
func (r *LayerReader) ReadDataInto(p []byte) error {
	rc, err := r.OpenData()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.ReadFull(rc, p)
	return err
}

// OpenData opens the current entry's unnamed data stream.
func (r *LayerReader) OpenData() (io.ReadCloser, error) {
	if r.cur == nil || r.cur.IsDir() || r.cur.Size == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	f, err := r.im.OpenID(r.curID)
	if err != nil {
		return nil, &winlayer.EntryError{Layer: r.im.Name(), Entry: r.cur.Name, Op: "read", Err: err}
	}
	return io.NopCloser(f), nil
}

// OpenStream opens an alternate data stream of the current entry.
func (r *LayerReader) OpenStream(s winlayer.Stream) (io.ReadCloser, error) {
	if r.cur == nil {
		return nil, fmt.Errorf("cim: no current entry")
	}
	name := strings.TrimSuffix(strings.TrimPrefix(s.Name, ":"), ":$DATA")
	f, err := r.im.OpenStreamID(r.curID, name)
	if err != nil {
		return nil, &winlayer.EntryError{Layer: r.im.Name(), Entry: r.cur.Name + s.Name, Op: "read", Err: err}
	}
	return io.NopCloser(f), nil
}

// copyEntries copies every entry of src, data and streams included, to dst.
func copyEntries(ctx context.Context, src interface {
	Next() (*winlayer.Entry, error)
	OpenData() (io.ReadCloser, error)
	OpenStream(s winlayer.Stream) (io.ReadCloser, error)
}, dst interface {
	Add(e *winlayer.Entry) error
	AddStream(name string, size int64, attributes uint32) error
	AddLink(name, target string) error
	Remove(name string) error
	Write(p []byte) (int, error)
}) error {
	buf := make([]byte, 1<<20)
	copyN := func(rc io.ReadCloser, n int64, what string) error {
		defer rc.Close()
		got, err := io.CopyBuffer(dst, io.LimitReader(rc, n), buf)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("cim: %s: read %d of %d bytes", what, got, n)
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := src.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case e.Removed:
			err = dst.Remove(e.Name)
		case e.LinkTarget != "":
			err = dst.AddLink(e.Name, e.LinkTarget)
		case e.ParentLink != "":
			err = dst.AddLink(e.Name, e.ParentLink)
		default:
			streams := e.Streams
			if err = dst.Add(e); err != nil {
				break
			}
			if !e.IsDir() && e.Size > 0 {
				rc, err2 := src.OpenData()
				if err = err2; err == nil {
					err = copyN(rc, e.Size, e.Name)
				}
			}
			for _, s := range streams {
				if err != nil {
					break
				}
				if err = dst.AddStream(s.Name, s.Size, s.Attributes); err != nil {
					break
				}
				rc, err2 := src.OpenStream(s)
				if err = err2; err == nil {
					err = copyN(rc, s.Size, e.Name+s.Name)
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// ImportLayerFolder writes the folder-form layer at folderPath (package winlayer) as
// a CIM layer at layerPath with the given parents (CIM layers, immediate parent
// first).
func ImportLayerFolder(ctx context.Context, folderPath, layerPath string, parentLayerPaths []string) error {
	r, err := winlayer.NewReader(ctx, folderPath)
	if err != nil {
		return err
	}
	defer r.Close()
	cw, err := NewCimLayerWriter(ctx, layerPath, parentLayerPaths)
	if err != nil {
		return err
	}
	if err := copyEntries(ctx, r, cw.EntryWriter()); err != nil {
		cw.Abort()
		return err
	}
	return cw.Close(ctx)
}

// ExportLayerFolder writes the CIM layer at layerPath as a folder-form layer at
// folderPath whose parents are the folder layers parentFolders (immediate parent
// first). Only the layer's own entries and removals are written, as in the tar form.
func ExportLayerFolder(ctx context.Context, layerPath, folderPath string, parentFolders []string) error {
	r, err := NewLayerReader(ctx, layerPath)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := winlayer.NewWriter(ctx, folderPath, parentFolders)
	if err != nil {
		return err
	}
	if err := copyEntries(ctx, r, w); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}
