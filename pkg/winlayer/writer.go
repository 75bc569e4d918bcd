//go:build unix

package winlayer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/internal/filejobs"
	"github.com/hostcompute/hostcompute/pkg/internal/writeback"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Writer builds a new layer folder. Entries are written into a staging folder beside
// the destination, which Close renames into place: until then no layer is visible, and
// Abort, a failure or a killed process leaves nothing at the destination. Staging
// folders of dead writers are removed by the next NewWriter in the same parent folder.
//
// A Writer is not safe for concurrent use. Errors are sticky: after the first failure
// every call returns it and Close discards the staging folder. On more than one
// processor, files of up to 256 KiB are created by worker goroutines once their data
// has arrived (package filejobs); the layer is the same as one written sequentially.
type Writer struct {
	ctx      context.Context
	path     string
	staging  string
	rootFD   int
	store    *metaStore
	parents  []string
	opts     options
	err      error
	closed   bool
	rootRef  *filejobs.Dir  // rootFD, for files made in the root
	dirName  string         // cached open directory, "" means rootFD
	dirRef   *filejobs.Dir  // its fd, shared with the files being made in it
	files    *filejobs.Pool // makes small files; nil on one processor
	cur      *current
	parentDB map[string]*metaStore // parent layer stores opened for hard-link lookups
	sds      map[string][]byte     // descriptors validated and stored, by content: their keys
	v        *Validator            // the rules of a Windows layer; every call passes it first
}

// maxCachedSDs bounds the descriptors remembered; image layers use a few hundred.
const maxCachedSDs = 4096

// current is the entry being written.
type current struct {
	rec   *record
	dirFD int           // directory holding the entry (owned by the cache, not closed here)
	dir   *filejobs.Dir // the same, held for a file made by a worker
	base  string
	file  *os.File // where Write goes: the main data or the current stream
	// A small file's data, gathered here for a worker to write: its buffer,
	// and whether Write goes there (file is nil then).
	async     *[]byte
	gathering bool
	size      int64 // declared size of what Write fills
	written   int64 // bytes written sequentially
	end       int64 // highest offset written
	sparse    bool  // leave zero runs as holes
	isStream  bool
	random    bool // WriteAt was used
}

// NewWriter starts writing a new layer at path, whose parents (immediate parent first,
// base layer last) are given; a layer without parents is a base layer. path must not
// exist, or be an empty directory.
func NewWriter(ctx context.Context, path string, parents []string, opts ...Option) (_ *Writer, err error) {
	o := options{sync: true}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &LayerError{Layer: path, Op: "create", Err: err}
	}
	fail := func(err error) error { return &LayerError{Layer: abs, Op: "create", Err: err} }
	if err := checkDestination(abs); err != nil {
		return nil, fail(err)
	}
	var absParents []string
	for _, p := range parents {
		ap, err := filepath.Abs(p)
		if err != nil {
			return nil, fail(err)
		}
		// A missing parent would be recorded in the layer chain and make every
		// lookup through it fail later; refuse it before anything is written.
		if st, err := os.Stat(ap); err != nil || !st.IsDir() {
			if err == nil {
				err = fmt.Errorf("not a directory")
			}
			return nil, fail(fmt.Errorf("parent layer %s: %w: %v", ap, ErrParentNotFound, err))
		}
		absParents = append(absParents, ap)
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fail(err)
	}
	CleanStale(dir)

	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fail(err)
	}
	staging := filepath.Join(dir, "."+filepath.Base(abs)+stagingMarker+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(staging, 0o755); err != nil {
		return nil, fail(err)
	}
	w := &Writer{ctx: ctx, path: abs, staging: staging, rootFD: -1, parents: absParents, opts: o}
	defer func() {
		if err != nil {
			w.discard()
		}
	}()
	w.rootFD, err = unix.Open(staging, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fail(err)
	}
	// The lock marks the staging folder as alive; CleanStale removes only unlocked ones.
	if err := unix.Flock(w.rootFD, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fail(err)
	}
	w.rootRef = filejobs.NewDir(w.rootFD, false)
	if err := os.MkdirAll(filepath.Join(staging, streamsDir), 0o755); err != nil {
		return nil, fail(err)
	}
	if w.store, err = createStore(filepath.Join(staging, metaDB)); err != nil {
		return nil, fail(err)
	}
	w.sds = map[string][]byte{}
	w.files = filejobs.New()
	w.v = NewValidator(len(absParents) == 0, w.parentKind)
	w.v.SetFreeSpace(func() uint64 {
		free, ok := freeBytes(w.rootFD)
		if !ok {
			return ^uint64(0)
		}
		return free
	})
	return w, nil
}

// checkDestination accepts a missing path or an empty directory.
func checkDestination(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return ErrLayerExists
	}
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return ErrLayerExists
	}
	return nil
}

// CleanStale removes staging and half-destroyed folders left in dir by writers or
// destroyers that died. Folders still locked by a live writer are kept.
func CleanStale(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || !strings.HasPrefix(n, ".") {
			continue
		}
		if !strings.Contains(n, stagingMarker) && !strings.Contains(n, destroyingMarker) {
			continue
		}
		p := filepath.Join(dir, n)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		unix.Close(fd)
	}
}

// Path returns the destination folder of the layer.
func (w *Writer) Path() string { return w.path }

func (w *Writer) entryErr(op, name string, err error) error {
	var ee *EntryError
	if errors.As(err, &ee) {
		return err
	}
	return &EntryError{Layer: w.path, Entry: name, Op: op, Err: err}
}

// fail records a sticky error.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

func (w *Writer) ready() error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if err := w.ctx.Err(); err != nil {
		return w.fail(err)
	}
	if w.files != nil {
		if err := w.files.Failure(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// waitFiles waits until the workers have made every file handed to them: before
// anything that looks at or changes the files already written.
func (w *Writer) waitFiles() error {
	if w.files == nil {
		return nil
	}
	return w.files.Wait()
}

// dir returns an fd for a directory of the layer, creating missing directories as
// implicit entries. The fd belongs to the cache.
func (w *Writer) dir(name string) (int, error) {
	d, err := w.dirOf(name)
	if err != nil {
		return -1, err
	}
	return d.FD(), nil
}

// dirOf is dir with the cache's shared fd.
func (w *Writer) dirOf(name string) (*filejobs.Dir, error) {
	if name == "" {
		return w.rootRef, nil
	}
	if w.dirRef != nil && w.dirName == name {
		return w.dirRef, nil
	}
	fd, err := w.openDir(name)
	if err != nil {
		return nil, err
	}
	if w.dirRef != nil {
		w.dirRef.Release()
	}
	w.dirName, w.dirRef = name, filejobs.NewDir(fd, true)
	return w.dirRef, nil
}

// openDir opens (creating if needed) a directory and returns a new fd.
func (w *Writer) openDir(name string) (int, error) {
	fd, err := openDirBeneath(w.rootFD, name)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, err
	}
	parent := parentOf(name)
	pfd := w.rootFD
	if parent != "" {
		if pfd, err = w.openDir(parent); err != nil {
			return -1, err
		}
		defer unix.Close(pfd)
	}
	if old, err := w.existing(name); err != nil {
		return -1, err
	} else if old != nil && !isDirRecord(old) {
		return -1, fmt.Errorf("%w: %s is a file or a reparse point", ErrParentNotDirectory, name)
	}
	if err := unix.Mkdirat(pfd, baseOf(name), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	rec := &record{implicit: true, entry: Entry{Name: name, Info: winfile.BasicInfo{FileAttributes: winfile.AttrDirectory}}}
	if err := w.store.put(rec); err != nil {
		return -1, err
	}
	return openDirBeneath(w.rootFD, name)
}

// existing returns the record of what this layer already holds at name, or nil. Every
// file the writer makes has a record (directories made for children too), so the
// records answer without asking the filesystem. It fails when the layer holds a
// different spelling of name.
func (w *Writer) existing(name string) (*record, error) {
	old, err := w.store.get(name)
	if err != nil {
		return nil, err
	}
	if old != nil && old.entry.Name != name {
		return nil, fmt.Errorf("%w: %s and %s", ErrCaseCollision, old.entry.Name, name)
	}
	return old, nil
}

// isDirRecord reports whether a record stands for a real directory on disk.
func isDirRecord(r *record) bool {
	return r.implicit || r.entry.IsDir() && r.entry.linkReparse() == nil
}

// removeExisting deletes what this layer holds at name (old is its record: a duplicate
// entry, the later one wins), with its records and stream files.
func (w *Writer) removeExisting(dirFD int, name string, old *record) error {
	if err := w.waitFiles(); err != nil {
		return err
	}
	base := baseOf(name)
	if isDirRecord(old) {
		if err := os.RemoveAll(filepath.Join(w.staging, name)); err != nil {
			return err
		}
		gone, err := w.store.deleteBelow(name)
		if err != nil {
			return err
		}
		for _, r := range gone {
			w.removeStreamFiles(r)
		}
	} else if err := unix.Unlinkat(dirFD, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	w.removeStreamFiles(old)
	return w.store.delete(name)
}

func (w *Writer) streamPath(id uint64) string {
	return filepath.Join(w.staging, streamsDir, fmt.Sprintf("%016x", id))
}

func (w *Writer) removeStreamFiles(r *record) {
	for _, s := range r.entry.Streams {
		os.Remove(w.streamPath(s.id))
	}
	if r.dataID != 0 {
		os.Remove(w.streamPath(r.dataID))
	}
}

func (w *Writer) newStreamFile(sparse bool) (uint64, *os.File, error) {
	id, err := w.store.nextStreamID()
	if err != nil {
		return 0, nil, err
	}
	f, err := os.OpenFile(w.streamPath(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	return id, f, err
}

// Add starts a new entry: a directory when e.Info has AttrDirectory, a symbolic link for
// a symlink or mount point reparse buffer, otherwise a regular file whose e.Size bytes of
// data follow through Write (or WriteAt and Truncate for sparse data). e.Streams and
// e.LinkTarget are ignored; use AddStream and AddLink. Every call is checked by the
// layer's Validator first (a name given twice, one below a reparse point, ... fail
// with its errors). The Writer keeps its own copy of e.
func (w *Writer) Add(e *Entry) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.finish(); err != nil {
		return w.fail(err)
	}
	name, err := w.v.Add(e)
	if err != nil {
		return w.fail(w.entryErr("add", e.Name, err))
	}
	if err := w.add(name, e); err != nil {
		return w.fail(w.entryErr("add", name, err))
	}
	return nil
}

func (w *Writer) add(name string, e *Entry) error {
	if sd := e.SecurityDescriptor; len(sd) > 0 && w.sds[string(sd)] == nil {
		if err := winfile.ValidateSecurityDescriptor(sd); err != nil {
			return fmt.Errorf("security descriptor: %w", err)
		}
	}
	if len(e.ExtendedAttributes) > 0 {
		if _, err := winfile.EncodeExtendedAttributes(e.ExtendedAttributes); err != nil {
			return fmt.Errorf("extended attributes: %w", err)
		}
	}
	var link *winfile.ReparsePoint
	if len(e.Reparse) > 0 {
		rp, err := winfile.DecodeReparsePoint(e.Reparse)
		if err != nil {
			return fmt.Errorf("reparse buffer: %w", err)
		}
		if rp.IsSymlinkOrMountPoint() {
			link = rp
		}
	}
	old, err := w.existing(name)
	if err != nil {
		return err
	}
	dref, err := w.dirOf(parentOf(name))
	if err != nil {
		return err
	}
	dirFD := dref.FD()
	base := baseOf(name)
	rec := &record{entry: *e.Clone()}
	rec.entry.Name = name
	rec.entry.Streams = nil
	rec.entry.LinkTarget = ""
	if len(rec.entry.Reparse) == 0 {
		rec.entry.Reparse = nil
	}
	if rec.entry.IsDir() {
		rec.entry.Size = 0
	}
	if old != nil {
		if isDirRecord(old) && rec.entry.IsDir() && link == nil {
			// A directory given again keeps its children and takes the new metadata.
			rec.entry.Streams = old.entry.Streams
			w.cur = &current{rec: rec, dirFD: dirFD, base: base}
			return nil
		}
		if err := w.removeExisting(dirFD, name, old); err != nil {
			return err
		}
	}
	c := &current{rec: rec, dirFD: dirFD, base: base, size: rec.entry.Size,
		sparse: rec.entry.Info.FileAttributes&winfile.AttrSparseFile != 0}
	if w.files != nil && link == nil && !rec.entry.IsDir() && !c.sparse && c.size <= filejobs.MaxSize {
		// A worker makes it once its data is here (see package filejobs).
		c.async = filejobs.Buffer(int(c.size))
		c.gathering = true
		c.dir = dref.Hold()
		w.cur = c
		return nil
	}
	switch {
	case link != nil:
		// Symbolic links and mount points become Linux symbolic links, so Files/ stays
		// browsable; the exact reparse buffer is in the metadata.
		target := strings.ReplaceAll(link.Target(), `\`, "/")
		if target == "" {
			target = "."
		}
		if err := unix.Symlinkat(target, dirFD, base); err != nil {
			return err
		}
		if rec.entry.Size > 0 {
			// Rare: a reparse point that also has data. Keep the data aside.
			id, f, err := w.newStreamFile(c.sparse)
			if err != nil {
				return err
			}
			rec.dataID, c.file = id, f
		}
	case rec.entry.IsDir():
		if err := unix.Mkdirat(dirFD, base, 0o755); err != nil {
			return err
		}
	default:
		fd, err := unix.Openat(dirFD, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		c.file = os.NewFile(uintptr(fd), name)
	}
	w.cur = c
	return nil
}

// AddStream starts an alternate data stream of the current entry, named as Windows
// reports it (":name:$DATA"; a bare "name" is completed to that form). size bytes follow
// through Write.
func (w *Writer) AddStream(name string, size int64, attributes uint32) error {
	if err := w.ready(); err != nil {
		return err
	}
	if w.cur == nil {
		return w.fail(w.entryErr("stream", name, ErrNoEntry))
	}
	if err := w.endData(); err != nil {
		return w.fail(err)
	}
	ename := w.cur.rec.entry.Name
	sname, err := w.v.AddStream(name, size)
	if err != nil {
		return w.fail(w.entryErr("stream", ename+":"+strings.TrimPrefix(name, ":"), err))
	}
	sparse := attributes&winfile.StreamAttrSparse != 0
	id, f, err := w.newStreamFile(sparse)
	if err != nil {
		return w.fail(w.entryErr("stream", ename+sname, err))
	}
	w.cur.rec.entry.Streams = append(w.cur.rec.entry.Streams, Stream{Name: sname, Size: size, Attributes: attributes, id: id})
	w.cur.file, w.cur.size, w.cur.written, w.cur.end = f, size, 0, 0
	w.cur.sparse, w.cur.isStream, w.cur.random = sparse, true, false
	return nil
}

// Write appends data to the current entry's data or stream.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.ready(); err != nil {
		return 0, err
	}
	c := w.cur
	if c == nil || (c.file == nil && !c.gathering) {
		name := ""
		if c != nil {
			name = c.rec.entry.Name
		}
		if len(p) == 0 {
			return 0, nil
		}
		return 0, w.fail(w.entryErr("write", name, ErrNoEntry))
	}
	if c.written+int64(len(p)) > c.size {
		return 0, w.fail(w.entryErr("write", c.rec.entry.Name, fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, c.size)))
	}
	n, err := w.writeAt(p, c.written)
	c.written += int64(n)
	if err != nil {
		return n, w.fail(w.entryErr("write", c.rec.entry.Name, err))
	}
	return n, nil
}

// WriteAt writes data of the current entry or stream at an offset, leaving any gap as
// a hole: the form sparse backup blocks arrive in.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	if err := w.ready(); err != nil {
		return 0, err
	}
	c := w.cur
	if c == nil || (c.file == nil && !c.gathering) {
		return 0, w.fail(w.entryErr("write", "", ErrNoEntry))
	}
	if off < 0 || off+int64(len(p)) > c.size {
		return 0, w.fail(w.entryErr("write", c.rec.entry.Name, fmt.Errorf("%w: write at %d+%d beyond %d", ErrSizeMismatch, off, len(p), c.size)))
	}
	c.random = true
	n, err := w.writeAt(p, off)
	if err != nil {
		return n, w.fail(w.entryErr("write", c.rec.entry.Name, err))
	}
	return n, nil
}

// SetSize changes the declared size of the current data or stream: sparse backup
// streams give the logical size only at their end.
func (w *Writer) SetSize(size int64) error {
	if err := w.ready(); err != nil {
		return err
	}
	c := w.cur
	if c == nil {
		return w.fail(w.entryErr("write", "", ErrNoEntry))
	}
	if size < 0 || size > maxFileSize || size < c.end {
		return w.fail(w.entryErr("write", c.rec.entry.Name, fmt.Errorf("%w: size %d", ErrSizeMismatch, size)))
	}
	if c.gathering && size > int64(len(*c.async)) {
		// Larger than gathered data may be: the file is made here after all.
		if err := w.makeNow(c); err != nil {
			return w.fail(w.entryErr("write", c.rec.entry.Name, err))
		}
	}
	if c.file == nil && !c.gathering {
		if c.rec.entry.IsDir() || size > 0 {
			return w.fail(w.entryErr("write", c.rec.entry.Name, fmt.Errorf("%w: entry has no data", ErrSizeMismatch)))
		}
		return nil
	}
	c.size = size
	c.random = true
	return nil
}

const holeChunk = 64 << 10

var zeroChunk [holeChunk]byte

func (w *Writer) writeAt(p []byte, off int64) (int, error) {
	c := w.cur
	if end := off + int64(len(p)); end > c.end {
		c.end = end
	}
	if c.gathering {
		// Within c.size, which the callers checked, and c.size fits the buffer.
		return copy((*c.async)[off:], p), nil
	}
	if !c.sparse {
		return c.file.WriteAt(p, off)
	}
	// Sparse: skip whole zero chunks so they stay holes.
	done := 0
	for done < len(p) {
		n := min(holeChunk, len(p)-done)
		chunk := p[done : done+n]
		if !bytes.Equal(chunk, zeroChunk[:n]) {
			if _, err := c.file.WriteAt(chunk, off+int64(done)); err != nil {
				return done, err
			}
		}
		done += n
	}
	return done, nil
}

// endData completes the data or stream being written.
func (w *Writer) endData() error {
	c := w.cur
	if c != nil && c.gathering {
		name := c.rec.entry.Name
		c.gathering = false
		if !c.random && c.written != c.size {
			return w.entryErr("write", name, fmt.Errorf("%w: got %d of %d bytes", ErrSizeMismatch, c.written, c.size))
		}
		c.rec.entry.Size = c.size
		return nil // a worker makes the file once the entry is finished
	}
	if c == nil || c.file == nil {
		return nil
	}
	f := c.file
	c.file = nil
	name := c.rec.entry.Name
	if !c.random && c.written != c.size {
		f.Close()
		return w.entryErr("write", name, fmt.Errorf("%w: got %d of %d bytes", ErrSizeMismatch, c.written, c.size))
	}
	if c.sparse || c.end < c.size { // skipped zero chunks at the end leave the file short
		if err := f.Truncate(c.size); err != nil {
			f.Close()
			return w.entryErr("write", name, err)
		}
	}
	if c.isStream {
		s := &c.rec.entry.Streams[len(c.rec.entry.Streams)-1]
		s.Size = c.size
	} else {
		c.rec.entry.Size = c.size
	}
	if w.opts.sync && c.size >= writeback.MinSize {
		// The layer is synced at the end: its disk writes can start now.
		writeback.Start(int(f.Fd()), 0, 0)
	}
	if err := f.Close(); err != nil {
		return w.entryErr("write", name, err)
	}
	return nil
}

// Current returns the entry being written, so that metadata that arrives after its data
// (a security descriptor or EAs late in a backup stream) can still be set. Changes to
// Name, Info.FileAttributes' DIRECTORY bit and Reparse have no effect.
func (w *Writer) Current() *Entry {
	if w.cur == nil {
		return nil
	}
	return &w.cur.rec.entry
}

// finish completes the current entry and stores its record.
func (w *Writer) finish() error {
	c := w.cur
	if c == nil {
		return nil
	}
	// Unless handed to a worker below, what c holds for one goes back.
	defer c.releaseAsync()
	if err := w.endData(); err != nil {
		w.cur = nil
		return err
	}
	w.cur = nil
	rec := c.rec
	name := rec.entry.Name
	if sd := rec.entry.SecurityDescriptor; len(sd) > 0 {
		h := w.sds[string(sd)]
		if h == nil {
			if err := winfile.ValidateSecurityDescriptor(sd); err != nil {
				return w.entryErr("add", name, fmt.Errorf("security descriptor: %w", err))
			}
			var err error
			if h, err = w.store.putSD(sd); err != nil {
				return w.entryErr("add", name, err)
			}
			if len(w.sds) < maxCachedSDs {
				w.sds[string(sd)] = h
			}
		}
		rec.sdHash = h
	}
	saved := rec.entry.SecurityDescriptor
	rec.entry.SecurityDescriptor = nil
	err := w.store.put(rec)
	rec.entry.SecurityDescriptor = saved
	if err != nil {
		return w.entryErr("add", name, err)
	}
	// Linux times follow the Windows ones, for people browsing Files/.
	if !rec.entry.IsDir() {
		ts := [2]unix.Timespec{
			unix.NsecToTimespec(rec.entry.Info.LastAccessTime.Time().UnixNano()),
			unix.NsecToTimespec(rec.entry.Info.LastWriteTime.Time().UnixNano()),
		}
		if c.async != nil {
			layer := w.path
			w.files.Submit(&filejobs.Job{
				Dir: c.dir, Base: c.base, Perm: 0o644, Data: (*c.async)[:rec.entry.Size], Buf: c.async,
				Times: &ts,
				Fail:  func(err error) error { return &EntryError{Layer: layer, Entry: name, Op: "write", Err: err} },
			})
			c.async, c.dir = nil, nil
			return nil
		}
		unix.UtimesNanoAt(c.dirFD, c.base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// makeNow makes the file of c, whose data was being gathered for a worker, here
// and now; Write then goes to the file.
func (w *Writer) makeNow(c *current) error {
	fd, err := unix.Openat(c.dirFD, c.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), c.rec.entry.Name)
	if c.end > 0 {
		if _, err := f.WriteAt((*c.async)[:c.end], 0); err != nil {
			f.Close()
			return err
		}
	}
	c.releaseAsync()
	c.file = f
	return nil
}

// releaseAsync gives back what c held for a worker.
func (c *current) releaseAsync() {
	if c.async != nil {
		filejobs.PutBuffer(c.async)
		c.async = nil
	}
	if c.dir != nil {
		c.dir.Release()
		c.dir = nil
	}
	c.gathering = false
}

// AddLink adds name as a hard link to target, an entry of this layer or of one of its
// parents (searched in order). Both must be files, not directories.
func (w *Writer) AddLink(name, target string) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.finish(); err != nil {
		return w.fail(err)
	}
	cname, ctarget, err := w.v.AddLink(name, target)
	if err != nil {
		return w.fail(w.entryErr("link", name, err))
	}
	if err := w.addLink(cname, ctarget); err != nil {
		return w.fail(w.entryErr("link", cname, err))
	}
	return nil
}

func (w *Writer) addLink(name, target string) error {
	// The target may be a file a worker is making.
	if err := w.waitFiles(); err != nil {
		return err
	}
	old, err := w.existing(name)
	if err != nil {
		return err
	}
	// Find the target: this layer first, then the parents in order.
	srcRoot, srcFD, rec, err := w.findLinkTarget(target)
	if err != nil {
		return err
	}
	if srcFD != w.rootFD {
		defer unix.Close(srcFD)
	}
	tdir, err := openDirBeneath(srcFD, parentOf(target))
	if parentOf(target) == "" {
		tdir, err = unix.Dup(srcFD)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLinkTarget, target, err)
	}
	defer unix.Close(tdir)
	dirFD, err := w.dir(parentOf(name))
	if err != nil {
		return err
	}
	base := baseOf(name)
	if old != nil {
		if err := w.removeExisting(dirFD, name, old); err != nil {
			return err
		}
	}
	if err := unix.Linkat(tdir, baseOf(target), dirFD, base, 0); err != nil {
		if !errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("%w: %s: %v", ErrLinkTarget, target, err)
		}
		// The parent layer is on another filesystem: copy instead.
		if err := copyFileAt(tdir, baseOf(target), dirFD, base); err != nil {
			return fmt.Errorf("copying link target %s from %s: %w", target, srcRoot, err)
		}
	}
	nrec := &record{entry: *rec.entry.Clone(), sdHash: rec.sdHash}
	nrec.entry.Name = name
	if srcRoot != w.staging {
		nrec.parentLink = target // kept, so the layer's tar and CIM forms keep the link
	} else {
		nrec.parentLink = rec.parentLink
	}
	if rec.sdHash != nil && srcRoot != w.staging {
		// The descriptor lives in the parent's store; copy it into ours.
		if h, err := w.store.putSD(rec.entry.SecurityDescriptor); err == nil {
			nrec.sdHash = h
		}
	}
	// Alternate streams belong to the file, so every name shares them: hard-link the
	// stream files under fresh IDs, so that removing one name keeps the others intact.
	nrec.entry.Streams = nil
	for _, s := range rec.entry.Streams {
		id, err := w.store.nextStreamID()
		if err != nil {
			return err
		}
		src := filepath.Join(srcRoot, streamsDir, fmt.Sprintf("%016x", s.id))
		if err := os.Link(src, w.streamPath(id)); err != nil {
			if err := copyFile(src, w.streamPath(id)); err != nil {
				return err
			}
		}
		s.id = id
		nrec.entry.Streams = append(nrec.entry.Streams, s)
	}
	nrec.dataID = 0
	if rec.dataID != 0 {
		id, err := w.store.nextStreamID()
		if err != nil {
			return err
		}
		src := filepath.Join(srcRoot, streamsDir, fmt.Sprintf("%016x", rec.dataID))
		if err := os.Link(src, w.streamPath(id)); err != nil {
			if err := copyFile(src, w.streamPath(id)); err != nil {
				return err
			}
		}
		nrec.dataID = id
	}
	nrec.entry.SecurityDescriptor = nil
	return w.store.put(nrec)
}

// findLinkTarget locates a hard-link target and returns the root folder holding it, an
// fd of that root, and its record (with the security descriptor filled in).
func (w *Writer) findLinkTarget(target string) (string, int, *record, error) {
	if rec, err := w.store.get(target); err != nil {
		return "", -1, nil, err
	} else if rec != nil && !rec.implicit {
		if rec.entry.IsDir() {
			return "", -1, nil, fmt.Errorf("%w: %s is a directory", ErrLinkTarget, target)
		}
		if rec.sdHash != nil {
			sd, err := w.store.sd(rec.sdHash)
			if err != nil {
				return "", -1, nil, err
			}
			rec.entry.SecurityDescriptor = sd
		}
		return w.staging, w.rootFD, rec, nil
	}
	for _, p := range w.parents {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		rec, err := w.parentRecord(p, fd, target)
		if err != nil {
			unix.Close(fd)
			return "", -1, nil, err
		}
		if rec == nil {
			unix.Close(fd)
			continue
		}
		if rec.entry.IsDir() {
			unix.Close(fd)
			return "", -1, nil, fmt.Errorf("%w: %s is a directory in parent %s", ErrLinkTarget, target, p)
		}
		return p, fd, rec, nil
	}
	return "", -1, nil, fmt.Errorf("%w: %s is neither in this layer nor in its parents", ErrLinkTarget, target)
}

// parentRecord looks a name up in a parent layer: its record if the parent has
// metadata, else one made from the file itself. It returns nil if the name is absent.
func (w *Writer) parentRecord(parent string, fd int, name string) (*record, error) {
	var st *unix.Stat_t
	var dfd int
	var err error
	if parentOf(name) == "" {
		dfd, err = unix.Dup(fd)
	} else {
		dfd, err = openDirBeneath(fd, parentOf(name))
	}
	if err != nil {
		return nil, nil
	}
	st, err = lstatAt(dfd, baseOf(name))
	unix.Close(dfd)
	if err != nil {
		return nil, nil
	}
	if w.parentDB == nil {
		w.parentDB = map[string]*metaStore{}
	}
	s, ok := w.parentDB[parent]
	if !ok {
		s, err = openStore(filepath.Join(parent, metaDB))
		if err != nil {
			s = nil
		}
		w.parentDB[parent] = s
	}
	if s != nil {
		rec, err := s.get(name)
		if err != nil {
			return nil, fmt.Errorf("parent %s: %w", parent, err)
		}
		if rec != nil {
			if rec.sdHash != nil {
				if rec.entry.SecurityDescriptor, err = s.sd(rec.sdHash); err != nil {
					return nil, fmt.Errorf("parent %s: %w", parent, err)
				}
			}
			return rec, nil
		}
	}
	return &record{entry: *defaultEntry(name, st, "")}, nil
}

// parentKind tells what the nearest parent layer holding name has there, for the
// Validator.
func (w *Writer) parentKind(name string) Kind {
	for _, p := range w.parents {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		rec, err := w.parentRecord(p, fd, name)
		unix.Close(fd)
		if err != nil || rec == nil {
			continue
		}
		if rec.implicit {
			return KindDir
		}
		return EntryKind(&rec.entry)
	}
	return KindNone
}

// Remove records that name, present in a parent layer, is deleted by this layer. If
// this layer itself holds name, that is removed too.
func (w *Writer) Remove(name string) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.finish(); err != nil {
		return w.fail(err)
	}
	cname, err := w.v.Remove(name)
	if err != nil {
		return w.fail(w.entryErr("remove", name, err))
	}
	if err := w.remove(cname); err != nil {
		return w.fail(w.entryErr("remove", cname, err))
	}
	return nil
}

func (w *Writer) remove(name string) error {
	dirFD, err := w.dir(parentOf(name))
	if err != nil {
		return err
	}
	old, err := w.existing(name)
	if err != nil {
		return err
	}
	if old != nil {
		if err := w.removeExisting(dirFD, name, old); err != nil {
			return err
		}
	}
	return w.store.addWhiteout(name)
}

// Abort discards everything written; no layer appears at the destination.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.discard()
	return nil
}

func (w *Writer) discard() {
	if w.cur != nil {
		if w.cur.file != nil {
			w.cur.file.Close()
		}
		w.cur.releaseAsync()
	}
	w.cur = nil
	if w.files != nil {
		w.files.Stop(true) // what is queued is not worth making: the folder goes
		w.files = nil
	}
	w.closeFDs()
	if w.store != nil {
		w.store.close()
		w.store = nil
	}
	if w.rootFD >= 0 {
		unix.Close(w.rootFD)
		w.rootFD = -1
	}
	os.RemoveAll(w.staging)
}

func (w *Writer) closeFDs() {
	if w.dirRef != nil {
		w.dirRef.Release()
		w.dirRef, w.dirName = nil, ""
	}
	for _, s := range w.parentDB {
		if s != nil {
			s.close()
		}
	}
	w.parentDB = nil
}

// Close completes the layer and makes it visible at its destination. After a failure
// the staging folder is discarded and the first error returned.
func (w *Writer) Close() error {
	if w.closed {
		return ErrClosed
	}
	if err := w.ready(); err != nil {
		w.Abort()
		return err
	}
	if err := w.commit(); err != nil {
		w.Abort()
		return &LayerError{Layer: w.path, Op: "commit", Err: err}
	}
	w.closed = true
	return nil
}

func (w *Writer) commit() error {
	if err := w.finish(); err != nil {
		return err
	}
	if w.files != nil {
		err := w.files.Wait()
		w.files.Stop(false)
		w.files = nil
		if err != nil {
			return err
		}
	}
	w.closeFDs()
	if len(w.parents) > 0 {
		if err := w.writeTombstones(); err != nil {
			return err
		}
		chain, err := json.Marshal(w.parents)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(w.staging, LayerChainFile), chain, 0o600); err != nil {
			return err
		}
	}
	chain, _ := json.Marshal(w.parents)
	if err := w.store.putMeta(keyParents, chain); err != nil {
		return err
	}
	if err := w.store.commit(); err != nil {
		return err
	}
	if err := w.store.close(); err != nil {
		w.store = nil
		return err
	}
	w.store = nil
	if w.opts.sync {
		if err := syncFS(w.rootFD); err != nil {
			return err
		}
	}
	if err := checkDestination(w.path); err != nil {
		return err
	}
	// rename(2) itself, not os.Rename: it replaces an empty destination directory.
	if err := unix.Rename(w.staging, w.path); err != nil {
		return err
	}
	unix.Close(w.rootFD) // releases the staging lock
	w.rootFD = -1
	if w.opts.sync {
		if d, err := os.Open(filepath.Dir(w.path)); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// writeTombstones writes tombstones.txt: the removed names under Files/, relative to
// Files, each with a leading backslash, in the format Windows export folders use.
func (w *Writer) writeTombstones() error {
	var b strings.Builder
	b.WriteString(tombstonesVersion + "\n")
	err := w.store.allWhiteouts(func(name string) error {
		if under(name, FilesDir) {
			b.WriteString(strings.ReplaceAll(name[len(FilesDir):], "/", `\`) + "\n")
		}
		return nil
	})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.staging, TombstonesFile), []byte(b.String()), 0o644)
}

func copyFileAt(srcDir int, srcName string, dstDir int, dstName string) error {
	sfd, err := unix.Openat(srcDir, srcName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	src := os.NewFile(uintptr(sfd), srcName)
	defer src.Close()
	dfd, err := unix.Openat(dstDir, dstName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	dst := os.NewFile(uintptr(dfd), dstName)
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func copyFile(src, dst string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(d, s); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
