package winlayer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Errors of UpperReader.
var (
	// ErrUnsupportedUpper means the upper directory uses an overlayfs feature
	// whose changes cannot be read from the upper alone (redirected directories,
	// metadata-only copy-up), or holds a file with no Windows form (a FIFO, a
	// socket, a device).
	ErrUnsupportedUpper = fmt.Errorf("winlayer: upper directory entry not supported: %w", errors.ErrUnsupported)
	// ErrUpperOnThisOS means this system cannot read an overlayfs upper directory
	// (its whiteouts are device files and its markers trusted extended
	// attributes, which only Linux gives).
	ErrUpperOnThisOS = fmt.Errorf("winlayer: reading an overlayfs upper directory needs Linux: %w", errors.ErrUnsupported)
)

// UpperReader reads the changes that a union of Windows layers holds in its
// writable layer — the upper directory of the overlayfs union that PrepareLayer
// mounts, the Files/ folder of a scratch layer's volume — as the entries of a new
// layer over the union's parents, in the order Reader gives a layer folder's
// entries. Parents are layer folders, immediate parent first; they are read, never
// changed.
//
// # What becomes an entry
//
//   - A whiteout (a 0/0 character device) becomes a removal (Entry.Removed) of a
//     name the parents show; whiteouts of names they do not show are dropped.
//   - An opaque directory (trusted.overlay.opaque) is a new directory: it is
//     written with the removal of every name the parents show in it that the
//     upper does not hold, so nothing below it comes from the parents.
//   - Every other file, directory and symbolic link of the upper is an entry;
//     names linked together in the upper are hard links (Entry.LinkTarget).
//
// # Windows metadata of files written through the union
//
// The union holds Linux files only, so their Windows metadata is derived here:
//
//   - A name the parents show with the same kind (a file over a file, a directory
//     over a directory, a link over a link) was copied up by the union: it keeps
//     the parent's attributes, creation time, security descriptor, extended
//     attributes, alternate data streams and other backup streams, with the
//     upper's content, size, last write, last access and change times (and the
//     upper's link target for a link).
//   - Anything else is new, and gets what Windows gives a file a container
//     creates: the attributes ARCHIVE (files), DIRECTORY (directories) or
//     ARCHIVE|REPARSE_POINT (symbolic links; DIRECTORY|REPARSE_POINT for one whose
//     target is a directory of the union); creation time the
//     Linux birth time (the modification time where the file system keeps
//     none); last write, last access and change times the Linux mtime, atime
//     and ctime; and the security descriptor Windows computes for a new file
//     created by ContainerAdministrator (owner and group S-1-5-93-2-1, the
//     DACL inherited from the directory that holds it; see
//     winfile.InheritSecurityDescriptor). Where nothing up the tree has a
//     descriptor, or nothing in it is inheritable, the entry has none.
//
// # Limits
//
// Only Files/ is read: registry changes (Hives/) are made by Windows itself and
// do not exist in a union on Linux. Upper directories that use overlayfs's
// redirect_dir or metacopy features give ErrUnsupportedUpper. An UpperReader is
// not safe for concurrent use, and the union should not be written while it
// reads (unprepare the layer first).
type UpperReader struct {
	ctx   context.Context
	upper string
	chain *chain
	stack []*upperFrame
	links map[fileKey]string

	cur        *Entry
	curPath    string // host path of the current entry
	curStreams string // layer root holding the current entry's streams
	data       *os.File
	err        error
}

var _ interface {
	Next() (*Entry, error)
	ReadDataInto([]byte) error
	OpenData() (io.ReadCloser, error)
	OpenStream(Stream) (io.ReadCloser, error)
} = (*UpperReader)(nil)

// upperFrame is a directory being read.
type upperFrame struct {
	name      string // layer name, "Files/..."
	path      string // host path
	inParents bool   // the parents show this directory and it is not opaque
	sd        []byte // the directory's security descriptor, for new children
	removed   []string
	children  []upperChild
}

type upperChild struct {
	base string
	st   upperStat
}

// NewUpperReader opens the upper directory upper (whose contents are the layer's
// Files/) of a union over the layer folders parents (immediate parent first).
func NewUpperReader(ctx context.Context, upper string, parents []string) (*UpperReader, error) {
	abs, err := filepath.Abs(upper)
	if err != nil {
		return nil, &LayerError{Layer: upper, Op: "open", Err: err}
	}
	if !upperSupported {
		return nil, &LayerError{Layer: abs, Op: "open", Err: ErrUpperOnThisOS}
	}
	st, err := statUpper(abs)
	if err != nil {
		return nil, &LayerError{Layer: abs, Op: "open", Err: err}
	}
	if !st.mode.IsDir() {
		return nil, &LayerError{Layer: abs, Op: "open", Err: fmt.Errorf("%w: the upper is not a directory", ErrNotLayer)}
	}
	c, err := openChain(parents)
	if err != nil {
		return nil, err
	}
	r := &UpperReader{ctx: ctx, upper: abs, chain: c, links: map[fileKey]string{}}
	// The root frame holds Files itself as its one child.
	r.stack = []*upperFrame{{name: "", path: filepath.Dir(abs), inParents: true,
		children: []upperChild{{base: FilesDir, st: st}}}}
	return r, nil
}

// Next advances to the next entry. It returns io.EOF at the end.
func (r *UpperReader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.data != nil {
		r.data.Close()
		r.data = nil
	}
	r.cur, r.curPath, r.curStreams = nil, "", ""
	e, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	r.cur = e
	return e, nil
}

func (r *UpperReader) next() (*Entry, error) {
	for len(r.stack) > 0 {
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		f := r.stack[len(r.stack)-1]
		if len(f.removed) > 0 {
			n := f.removed[0]
			f.removed = f.removed[1:]
			return &Entry{Name: f.name + "/" + n, Removed: true}, nil
		}
		if len(f.children) == 0 {
			r.stack = r.stack[:len(r.stack)-1]
			continue
		}
		c := f.children[0]
		f.children = f.children[1:]
		name, path := c.base, filepath.Join(f.path, c.base)
		if f.name != "" {
			name = f.name + "/" + c.base
		}
		if path == filepath.Join(filepath.Dir(r.upper), FilesDir) {
			path = r.upper // the upper's own name need not be Files
		}
		e, nf, err := r.entry(f, name, path, c.st)
		if err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				return nil, err
			}
			return nil, &EntryError{Layer: r.upper, Entry: name, Op: "read", Err: err}
		}
		if nf != nil {
			r.stack = append(r.stack, nf)
		}
		r.curPath = path
		return e, nil
	}
	return nil, io.EOF
}

// entry builds the entry of one name of the upper and, for a directory, the frame
// that reads it.
func (r *UpperReader) entry(f *upperFrame, name, path string, st upperStat) (*Entry, *upperFrame, error) {
	var pe *Entry
	var peRoot string
	if f.inParents {
		var err error
		if pe, peRoot, err = r.chain.lookup(name); err != nil {
			return nil, nil, err
		}
	}
	kind := st.mode.Type()
	var target string
	switch {
	case kind == fs.ModeSymlink:
		t, err := os.Readlink(path)
		if err != nil {
			return nil, nil, err
		}
		target = strings.ReplaceAll(t, "/", `\`)
	case kind == 0, kind == fs.ModeDir:
	default:
		return nil, nil, fmt.Errorf("%w: a %v has no Windows form", ErrUnsupportedUpper, kind)
	}
	if st.unsupported != "" {
		return nil, nil, fmt.Errorf("%w: %s", ErrUnsupportedUpper, st.unsupported)
	}
	copied := pe != nil && sameKind(pe, kind) && !(kind == fs.ModeDir && st.opaque)
	var e *Entry
	if copied {
		e = pe
		e.Info.LastWriteTime = winfile.NewFiletime(st.mtime)
		e.Info.LastAccessTime = winfile.NewFiletime(st.atime)
		e.Info.ChangeTime = winfile.NewFiletime(st.ctime)
		e.LinkTarget = ""
		switch kind {
		case 0:
			e.Size = st.size
			if st.size > 0 {
				e.NoDataStream = false
			}
			if e.linkReparse() == nil && len(e.Reparse) > 0 {
				// Writing a file through the union replaces whatever reparse
				// point stood for its data (as writing it on Windows would).
				e.Reparse = nil
				e.Info.FileAttributes &^= winfile.AttrReparsePoint
			}
			if e.dataID != 0 {
				e.dataID = 0 // the content is the upper's
			}
		case fs.ModeSymlink:
			// A link whose target the union did not change keeps its exact
			// reparse buffer; one given a new target gets a new buffer.
			if old, err := os.Readlink(filepath.Join(peRoot, filepath.FromSlash(name))); err != nil || strings.ReplaceAll(old, "/", `\`) != target {
				b, err := winfile.NewLinkReparsePoint(target, false).Encode()
				if err != nil {
					return nil, nil, err
				}
				e.Reparse = b
			}
		}
	} else {
		e = &Entry{Name: name}
		e.Info.LastWriteTime = winfile.NewFiletime(st.mtime)
		e.Info.LastAccessTime = winfile.NewFiletime(st.atime)
		e.Info.ChangeTime = winfile.NewFiletime(st.ctime)
		e.Info.CreationTime = e.Info.LastWriteTime
		if !st.btime.IsZero() {
			e.Info.CreationTime = winfile.NewFiletime(st.btime)
		}
		switch kind {
		case fs.ModeDir:
			e.Info.FileAttributes = winfile.AttrDirectory
		case fs.ModeSymlink:
			// A link to a directory is a directory link to Windows.
			e.Info.FileAttributes = winfile.AttrArchive | winfile.AttrReparsePoint
			if r.linksToDir(name, target) {
				e.Info.FileAttributes = winfile.AttrDirectory | winfile.AttrReparsePoint
			}
			b, err := winfile.NewLinkReparsePoint(target, false).Encode()
			if err != nil {
				return nil, nil, err
			}
			e.Reparse = b
		default:
			e.Info.FileAttributes = winfile.AttrArchive
			e.Size = st.size
		}
		if f.sd != nil {
			sd, err := winfile.InheritSecurityDescriptor(f.sd, e.IsDir(), winfile.SIDContainerAdministrator, winfile.SIDContainerAdministrator)
			if err != nil {
				return nil, nil, fmt.Errorf("inheriting the security descriptor of %s: %w", f.name, err)
			}
			e.SecurityDescriptor = sd
		}
	}
	if copied {
		r.curStreams = peRoot
	}
	if kind == 0 && st.nlink > 1 {
		k := fileKey{st.dev, st.ino}
		if first, ok := r.links[k]; ok {
			e.LinkTarget = first
		} else {
			r.links[k] = name
		}
	}
	if kind != fs.ModeDir {
		return e, nil, nil
	}
	nf := &upperFrame{name: name, path: path, inParents: copied, sd: e.SecurityDescriptor}
	if err := r.readDir(nf, st.opaque && pe != nil && pe.IsDir()); err != nil {
		return nil, nil, err
	}
	return e, nf, nil
}

// linksToDir reports whether the link name (with Windows target target) names a
// directory of the union: in the upper, or else in the parents. Targets are
// resolved inside Files/ only (an absolute target from its root); what lies
// outside, or does not exist, is taken for a file.
func (r *UpperReader) linksToDir(name, target string) bool {
	t := strings.ReplaceAll(target, `\`, "/")
	if len(t) >= 2 && t[1] == ':' {
		t = t[2:] // C:\x is x below the container's root
	}
	var p string
	if strings.HasPrefix(t, "/") {
		p = path.Clean(FilesDir + t)
	} else {
		p = path.Clean(path.Join(path.Dir(name), t))
	}
	if p != FilesDir && !strings.HasPrefix(p, FilesDir+"/") {
		return false
	}
	host := filepath.Join(r.upper, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, FilesDir), "/")))
	if st, err := statUpper(host); err == nil {
		return st.mode.IsDir()
	}
	pe, _, err := r.chain.lookup(p)
	return err == nil && pe != nil && pe.IsDir() && pe.linkReparse() == nil
}

// sameKind reports whether a parent's entry and an upper file are the same kind
// of object, so the upper's is the parent's copied up.
func sameKind(pe *Entry, kind fs.FileMode) bool {
	link := pe.linkReparse() != nil
	switch kind {
	case fs.ModeDir:
		return pe.IsDir() && !link
	case fs.ModeSymlink:
		return link
	}
	return !pe.IsDir() && !link
}

// readDir lists the directory of frame f: its whiteouts become removals of what
// the parents show, its other names children, both sorted byte-wise. An opaque
// directory over one the parents show also removes every name of theirs it
// does not hold.
func (r *UpperReader) readDir(f *upperFrame, opaqueOverParent bool) error {
	d, err := os.Open(f.path)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	slices.Sort(names)
	held := map[string]bool{}
	for _, n := range names {
		st, err := statUpper(filepath.Join(f.path, n))
		if err != nil {
			return &EntryError{Layer: r.upper, Entry: f.name + "/" + n, Op: "read", Err: err}
		}
		if st.whiteout {
			if f.inParents {
				pe, _, err := r.chain.lookup(f.name + "/" + n)
				if err != nil {
					return err
				}
				if pe != nil {
					f.removed = append(f.removed, n)
				}
			}
			continue
		}
		held[n] = true
		f.children = append(f.children, upperChild{base: n, st: st})
	}
	if opaqueOverParent {
		shown, err := r.chain.list(f.name)
		if err != nil {
			return err
		}
		for _, n := range shown {
			if !held[n] && !slices.Contains(f.removed, n) {
				f.removed = append(f.removed, n)
			}
		}
	}
	// Removals in the order Reader gives a folder's whiteouts: by folded name.
	slices.SortFunc(f.removed, func(a, b string) int { return strings.Compare(foldName(a), foldName(b)) })
	return nil
}

// Read reads the unnamed data stream of the current entry.
func (r *UpperReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	e := r.cur
	if e == nil || e.Removed || e.IsDir() || e.LinkTarget != "" || len(e.Reparse) > 0 || e.Size == 0 {
		return 0, io.EOF
	}
	if r.data == nil {
		f, err := openNoFollow(r.curPath)
		if err != nil {
			return 0, &EntryError{Layer: r.upper, Entry: e.Name, Op: "read", Err: err}
		}
		r.data = f
	}
	n, err := r.data.Read(p)
	if err != nil && err != io.EOF {
		err = &EntryError{Layer: r.upper, Entry: e.Name, Op: "read", Err: err}
	}
	return n, err
}

// OpenData opens the unnamed data stream of the current entry, also for a hard
// link; entries without data give an empty reader.
func (r *UpperReader) OpenData() (io.ReadCloser, error) {
	e := r.cur
	if e == nil || e.Removed || e.IsDir() || e.Size == 0 || len(e.Reparse) > 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	f, err := openNoFollow(r.curPath)
	if err != nil {
		return nil, &EntryError{Layer: r.upper, Entry: e.Name, Op: "read", Err: err}
	}
	return f, nil
}

// ReadDataInto reads the whole unnamed data stream of the current entry into p,
// whose length must be the entry's size.
func (r *UpperReader) ReadDataInto(p []byte) error {
	rc, err := r.OpenData()
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, p); err != nil {
		return &EntryError{Layer: r.upper, Entry: r.cur.Name, Op: "read", Err: err}
	}
	return nil
}

// DataRanges returns the allocated ranges of the current entry's data as (offset,
// length) pairs.
func (r *UpperReader) DataRanges() ([][2]int64, error) {
	if r.cur == nil || r.cur.Size == 0 {
		return nil, nil
	}
	f, err := openNoFollow(r.curPath)
	if err != nil {
		return nil, &EntryError{Layer: r.upper, Entry: r.cur.Name, Op: "read", Err: err}
	}
	defer f.Close()
	return dataRanges(f, r.cur.Size)
}

// OpenStream opens an alternate data stream of the current entry, which a file
// copied up from a parent keeps.
func (r *UpperReader) OpenStream(s Stream) (io.ReadCloser, error) {
	name := ""
	if r.cur != nil {
		name = r.cur.Name
	}
	if s.id == 0 || r.curStreams == "" {
		return nil, &EntryError{Layer: r.upper, Entry: name + s.Name, Op: "read", Err: fmt.Errorf("%w: stream %s has no content file", ErrCorrupt, s.Name)}
	}
	f, err := os.Open(filepath.Join(r.curStreams, streamsDir, fmt.Sprintf("%016x", s.id)))
	if err != nil {
		return nil, &EntryError{Layer: r.curStreams, Entry: name + s.Name, Op: "read", Err: err}
	}
	return f, nil
}

// Close releases the reader and the parents' metadata.
func (r *UpperReader) Close() error {
	if r.data != nil {
		r.data.Close()
		r.data = nil
	}
	if r.chain != nil {
		r.chain.close()
		r.chain = nil
	}
	r.stack = nil
	if r.err == nil {
		r.err = ErrClosed
	}
	return nil
}

// upperStat is what UpperReader needs to know of one name of the upper.
type upperStat struct {
	mode                       fs.FileMode // type bits
	size                       int64
	nlink, dev, ino            uint64
	atime, mtime, ctime, btime time.Time // btime zero when unknown
	whiteout                   bool      // an overlayfs whiteout
	opaque                     bool      // an opaque directory
	unsupported                string    // an overlayfs feature this reader cannot follow
}

// entryFromFileInfo derives Windows metadata for a file of a layer folder that has
// no record (put there by another tool), as Reader does.
func entryFromFileInfo(name string, fi fs.FileInfo, linkTarget string) *Entry {
	atime, ctime := fileTimes(fi)
	e := &Entry{Name: name}
	e.Info.LastWriteTime = winfile.NewFiletime(fi.ModTime())
	e.Info.CreationTime = e.Info.LastWriteTime
	e.Info.LastAccessTime = winfile.NewFiletime(atime)
	e.Info.ChangeTime = winfile.NewFiletime(ctime)
	switch {
	case fi.IsDir():
		e.Info.FileAttributes = winfile.AttrDirectory
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Info.FileAttributes = winfile.AttrReparsePoint
		if b, err := winfile.NewLinkReparsePoint(strings.ReplaceAll(linkTarget, "/", `\`), false).Encode(); err == nil {
			e.Reparse = b
		}
	default:
		e.Info.FileAttributes = winfile.AttrArchive
		e.Size = fi.Size()
	}
	return e
}
