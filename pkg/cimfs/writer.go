package cimfs

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/guid"
	"github.com/hostcompute/hostcompute/pkg/internal/writeback"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Header describes one file or directory given to Writer.Add, the way tar.Header
// describes a tar entry.
type Header struct {
	// Name is the path inside the image, components separated by '/' or '\'.
	Name string
	// Info holds the four times and the attributes; winfile.AttrDirectory makes a
	// directory. Only READONLY, HIDDEN, SYSTEM, ARCHIVE and SPARSE_FILE have a place
	// in the public record; the full value is kept in the hostcompute extension.
	Info winfile.BasicInfo
	// Size is the length of the unnamed data stream; exactly Size bytes must be
	// written before the next call. Directories have none.
	Size int64
	// NoDataStream marks a file without an unnamed data stream (Size must be 0).
	NoDataStream bool
	// SecurityDescriptor is a self-relative security descriptor, or nil for none.
	SecurityDescriptor []byte
	// ExtendedAttributes is a FILE_FULL_EA_INFORMATION chain, or nil.
	ExtendedAttributes []byte
	// ReparseData is a complete reparse buffer (with its 8-byte header), or nil.
	ReparseData []byte
}

// Option configures a Writer.
type Option func(*writerOptions)

type writerOptions struct {
	regionID guid.GUID
	seed     []byte
	public   bool
}

// WithoutExtensions writes only what the public format defines: 96-byte records and
// no extension block. Attributes other than READONLY, HIDDEN, SYSTEM, ARCHIVE and
// SPARSE_FILE, the no-data-stream mark, the added-by-this-image mark and the removal
// list are then not stored, so such an image does not export back to an identical
// layer tar.
func WithoutExtensions() Option { return func(o *writerOptions) { o.public = true } }

// WithRegionSetID makes the writer name its region files after id instead of the
// GUID derived from the image's name and content.
func WithRegionSetID(id guid.GUID) Option { return func(o *writerOptions) { o.regionID = id } }

// WithSeed mixes seed into the derived region set GUID, so two images with the same
// name and content in one directory can still get distinct region files.
func WithSeed(seed []byte) Option {
	return func(o *writerOptions) { o.seed = append([]byte(nil), seed...) }
}

// regionSetNamespace is the v5 namespace of derived region set GUIDs.
var regionSetNamespace = guid.GUID{Data1: 0x7a3c1f52, Data2: 0x4b1e, Data3: 0x5d2a, Data4: [8]byte{0x9c, 0x11, 0x6e, 0x0b, 0x3f, 0x84, 0xa2, 0x57}}

// smallDataLimit is the size below which file data goes to the small data region
// (8-byte alignment) rather than the page-aligned data region.
const smallDataLimit = 32 << 10

const regionBufferSize = 1 << 20

// Writer builds a CIM image: a .cim file and its region and object ID files, in one
// directory. Data streams straight to the region files; the per-file metadata, the
// name tree and the table of stored objects are kept in files of the staging
// folder behind a fixed-size page cache (see tree.go), so memory does not grow
// with the image: at Close one directory's listing at a time is held, and the
// removal list. Nothing is visible under the
// final names until Close succeeds; Abort, a failed Close or a killed process leave
// only a hidden staging folder that CleanStale removes.
//
// Output is deterministic: the same calls with the same name give byte-identical
// files. A Writer is not safe for concurrent use.
type Writer struct {
	dir, name string
	staging   string
	opts      writerOptions

	parents     []regionSet // combined ancestor sets, oldest first
	baseRegions int         // number of ancestor regions (own region i is baseRegions+i)
	regions     [regionCount]*regionWriter
	dedup       *diskHash // object ID → where the object is stored
	upcase      []uint16
	upcaseOff   regionOffset

	cache    *pageCache // of the spill files below
	tree     *spillTree
	cur      *wfile // file whose streams are being written
	curIndex uint64 // its fileIndex
	data     *dataWriter
	removals []string
	links    [][2]string // names linked to inherited files, and their targets ('\' separated)
	err      error
	done     bool
}

// wfile is one file record being built (see tree.go for where it is kept); hard
// links share it.
type wfile struct {
	info           winfile.BasicInfo
	isDir          bool
	data           stream
	sd, ea, rp     regionOffset
	eaLen          uint16
	rpTag          uint32
	streams        []adsEntry
	streamTableOff regionOffset
	noData         bool
	added          bool
	dirKey         uint64 // of a directory: the key its children are kept under
	nstreams       int    // read back from a record without its streams
}

type adsEntry struct {
	name string
	s    stream
}

// Create starts a new image name in dir. parent, when not empty, names an image in
// the same directory to fork: the new image holds the parent's whole tree, and
// Add, AddLink and Remove change it; the parent's objects are referenced, not
// copied. It fails with ErrExists if dir already holds name.
func Create(dir, name string, parent string, opts ...Option) (_ *Writer, err error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, &PathError{Op: "create", Path: name, Err: ErrInvalidName}
	}
	w := &Writer{dir: dir, name: name}
	for _, o := range opts {
		o(&w.opts)
	}
	if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
		return nil, &PathError{Op: "create", Path: filepath.Join(dir, name), Err: ErrExists}
	}
	w.staging, err = os.MkdirTemp(dir, fmt.Sprintf("%s%d-", stagingPrefix, os.Getpid()))
	if err != nil {
		return nil, &PathError{Op: "create", Path: filepath.Join(dir, name), Err: err}
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	w.upcase = upcaseTable()
	w.cache = newPageCache(pageCacheBytes)
	if w.tree, err = newSpillTree(w.cache, w.staging); err != nil {
		return nil, &PathError{Op: "create", Path: filepath.Join(dir, name), Err: err}
	}
	if w.dedup, err = newDiskHash(w.cache, filepath.Join(w.staging, "dedup")); err != nil {
		return nil, &PathError{Op: "create", Path: filepath.Join(dir, name), Err: err}
	}
	if parent != "" {
		if err := w.loadParent(parent); err != nil {
			return nil, err
		}
	}
	for t := 0; t < regionCount; t++ {
		rw, err := newRegionWriter(w.staging, t, w.baseRegions+t)
		if err != nil {
			return nil, err
		}
		w.regions[t] = rw
	}
	if w.tree.nfiles == 0 {
		if _, err := w.newDir(); err != nil {
			return nil, err
		}
	}
	if w.upcaseOff, err = w.putObject(regionMetadata, encodeUpcase(w.upcase), true); err != nil {
		return nil, err
	}
	return w, nil
}

// stagingPrefix starts the hidden folder a writer stages in, followed by its process
// ID.
const stagingPrefix = ".cimfs-staging-"

// CleanStale removes the staging folders that writers killed before Close or Abort
// left in dir: those whose process no longer exists.
func CleanStale(dir string) error {
	m, _ := filepath.Glob(filepath.Join(dir, stagingPrefix+"*"))
	var errs []error
	for _, p := range m {
		rest := strings.TrimPrefix(filepath.Base(p), stagingPrefix)
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && pid > 0 && processMayExist(pid) {
			continue // a live writer (or one we cannot tell): leave it
		}
		errs = append(errs, os.RemoveAll(p))
	}
	return errors.Join(errs...)
}

// loadParent reads the parent image's tree and object IDs.
func (w *Writer) loadParent(parent string) error {
	im, err := Open(filepath.Join(w.dir, parent))
	if err != nil {
		return err
	}
	defer im.Close()
	w.parents = append(append([]regionSet(nil), im.hdr.parents...), im.hdr.own)
	w.baseRegions = len(im.regions)
	if w.baseRegions+regionCount > maxRegions {
		return &PathError{Op: "fork", Path: parent, Err: fmt.Errorf("%w: %d regions", ErrTooLarge, w.baseRegions+regionCount)}
	}
	// Object IDs of every ancestor region, for deduplication against them.
	for i, rf := range im.regions {
		if rf.objectIDs == "" {
			continue
		}
		b, err := im.readFile(rf.objectIDs, 1<<34)
		if err != nil {
			continue // object ID files are optional
		}
		entries, err := parseObjectIDFile(b, rf.objectIDs, rf.index, rf.size)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := w.dedupPut(e.id, makeOffset(i, e.offset), true); err != nil {
				return err
			}
		}
	}
	w.upcase = im.upcase
	// The whole tree: records keep their region offsets, which stay valid because the
	// combined region list of the fork starts with the parent's. seen maps the
	// parent's file IDs to their fileIndex (0: not yet), with the directory and
	// reparse bits, for hard links.
	seen, err := newDiskArray(w.cache, filepath.Join(w.staging, "parent"), 8)
	if err != nil {
		return err
	}
	defer seen.close()
	const seenDir, seenReparse = 1 << 63, 1 << 62
	var load func(id FileID, parentKey uint64, name string, depth int) error
	load = func(id FileID, parentKey uint64, name string, depth int) error {
		if depth > maxPathUnits/2 {
			return formatErr(im.name, fmt.Sprintf("file %d", id), 0, "directory nesting deeper than a path allows")
		}
		link := func(file, sub uint64, flags uint8) error {
			key := string(nameKey(w.upcase, name))
			old, ok, err := w.tree.lookup(parentKey, key)
			if err != nil {
				return err
			}
			var op *ixEntry
			if ok {
				op = &old
			}
			_, err = w.tree.link(parentKey, name, key, file, sub, flags, op)
			return err
		}
		v, err := seen.getUint64(uint64(id))
		if err != nil {
			return err
		}
		if v != 0 {
			if v&seenDir != 0 {
				return formatErr(im.name, fmt.Sprintf("file %d", id), 0, "directory reachable twice")
			}
			var flags uint8
			if v&seenReparse != 0 {
				flags |= ixReparse
			}
			return link(v&(1<<32-1), 0, flags)
		}
		rec, err := im.record(id)
		if err != nil {
			return err
		}
		f := &wfile{
			info:   rec.basicInfo(),
			isDir:  rec.data.typ == streamLinkTable,
			data:   rec.data,
			sd:     rec.sd,
			ea:     rec.ea,
			rp:     rec.reparse,
			eaLen:  rec.eaLength,
			rpTag:  rec.reparseTag,
			noData: rec.extFlags&extValid != 0 && rec.extFlags&extNoDataStream != 0,
		}
		if rec.streamTable != 0 {
			ads, err := im.streamTable(id, rec)
			if err != nil {
				return err
			}
			for _, a := range ads {
				f.streams = append(f.streams, adsEntry{name: a.Name, s: a.s})
			}
		}
		idx, err := w.tree.newFile()
		if err != nil {
			return err
		}
		if f.isDir {
			f.dirKey = idx
			f.data = stream{typ: streamLinkTable}
		}
		if err := w.tree.putFile(idx, f); err != nil {
			return err
		}
		v = idx
		flags := fileFlags(f)
		if f.isDir {
			v |= seenDir
		}
		if flags&ixReparse != 0 {
			v |= seenReparse
		}
		if err := seen.putUint64(uint64(id), v); err != nil {
			return err
		}
		if depth > 0 {
			if err := link(idx, f.dirKey, flags); err != nil {
				return err
			}
		}
		if !f.isDir {
			return nil
		}
		ents, err := im.readDirID(uint32(id), &rec)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := load(e.ID, f.dirKey, e.Name, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return load(im.Root(), 0, "", 0)
}

// fileFlags returns the index flags of f.
func fileFlags(f *wfile) uint8 {
	var fl uint8
	if f.isDir {
		fl |= ixDir
	}
	if f.rp != 0 || f.rpTag != 0 {
		fl |= ixReparse
	}
	if f.added {
		fl |= ixAdded
	}
	return fl
}

// newDir makes a directory with default metadata and returns its fileIndex (its
// dirKey too).
func (w *Writer) newDir() (uint64, error) {
	idx, err := w.tree.newFile()
	if err != nil {
		return 0, err
	}
	f := &wfile{isDir: true, info: winfile.BasicInfo{FileAttributes: winfile.AttrDirectory}, data: stream{typ: streamLinkTable}, dirKey: idx}
	return idx, w.tree.putFile(idx, f)
}

func (w *Writer) dedupGet(id objectID) (regionOffset, bool, error) {
	k := hashKey(id.digest)
	a, b, ok, err := w.dedup.get(&k)
	if !ok || err != nil || b != id.length {
		return 0, false, err
	}
	return regionOffset(a), true, nil
}

// dedupPut records where the object id is; with onlyNew an entry already there
// stays.
func (w *Writer) dedupPut(id objectID, off regionOffset, onlyNew bool) error {
	k := hashKey(id.digest)
	_, err := w.dedup.put(&k, uint64(off), id.length, onlyNew)
	return err
}

// finishFile stores the record of the file added last, once its streams are
// complete.
func (w *Writer) finishFile() error {
	if w.cur == nil {
		return nil
	}
	f, idx := w.cur, w.curIndex
	w.cur = nil
	if err := w.tree.putFile(idx, f); err != nil {
		return w.fail(err)
	}
	return nil
}

// regionWriter appends objects to one staged region file through a buffer, and can
// take back the tail it just wrote (a duplicate found after streaming it).
type regionWriter struct {
	f       *os.File
	path    string
	typ     int
	index   int // index in the combined region list
	size    int64
	flushed int64
	buf     []byte
	ids     *spillFile // object ID entries, in offset order
	nids    int64
	lastID  int64

	// A flush hands the full buffer to a goroutine and goes on filling the spare
	// one, so the copy into the page cache overlaps reading and hashing the input.
	// At most one write is in flight; pending reports its result.
	spare   []byte
	pending chan error
	werr    error
}

func newRegionWriter(staging string, typ, index int) (*regionWriter, error) {
	path := filepath.Join(staging, fmt.Sprintf("region_%d", typ))
	ids, err := newSpillFile(filepath.Join(staging, fmt.Sprintf("ids_%d", typ)))
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	rw := &regionWriter{f: f, path: path, typ: typ, index: index, buf: make([]byte, 0, regionBufferSize), ids: ids}
	_, err = rw.Write(encodeRegionHeader(typ, uint8(typ)))
	return rw, err
}

func (rw *regionWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(rw.buf) == cap(rw.buf) {
			if err := rw.flush(); err != nil {
				return n - len(p), err
			}
		}
		c := copy(rw.buf[len(rw.buf):cap(rw.buf)], p)
		rw.buf = rw.buf[:len(rw.buf)+c]
		p = p[c:]
		rw.size += int64(c)
	}
	return n, nil
}

// flush starts writing the buffer out and returns; wait collects the result.
func (rw *regionWriter) flush() error {
	if err := rw.wait(); err != nil {
		return err
	}
	if len(rw.buf) == 0 {
		return nil
	}
	b, off := rw.buf, rw.flushed
	done := make(chan error, 1)
	go func() {
		_, err := rw.f.WriteAt(b, off)
		if err == nil {
			// Start writeback now (without waiting for it), so the fsync at commit
			// finds little left to do and dirty pages do not pile up.
			writeback.Start(int(rw.f.Fd()), off, int64(len(b)))
		}
		done <- err
	}()
	rw.pending = done
	rw.flushed += int64(len(b))
	if rw.spare == nil {
		rw.spare = make([]byte, 0, regionBufferSize)
	}
	// The spare buffer's last write has completed (wait above).
	rw.buf, rw.spare = rw.spare[:0], b
	return nil
}

// wait blocks until the write in flight, if any, is done; a failed write stays
// the region's error.
func (rw *regionWriter) wait() error {
	if rw.pending != nil {
		if err := <-rw.pending; err != nil && rw.werr == nil {
			rw.werr = err
		}
		rw.pending = nil
	}
	return rw.werr
}

// drain writes out everything buffered and waits for it.
func (rw *regionWriter) drain() error {
	if err := rw.flush(); err != nil {
		return err
	}
	return rw.wait()
}

// align pads with zeros to the region type's alignment.
func (rw *regionWriter) align() error {
	a := regionAlign[rw.typ]
	if pad := (a - rw.size%a) % a; pad > 0 {
		_, err := rw.Write(make([]byte, pad))
		return err
	}
	return nil
}

// truncate takes back everything from off on.
func (rw *regionWriter) truncate(off int64) error {
	if off >= rw.flushed {
		rw.buf = rw.buf[:off-rw.flushed]
	} else {
		if err := rw.wait(); err != nil {
			return err
		}
		if err := rw.f.Truncate(off); err != nil {
			return err
		}
		rw.buf = rw.buf[:0]
		rw.flushed = off
	}
	rw.size = off
	return nil
}

func digestOf(h hash.Hash, length int64) objectID {
	var sum [sha256.Size]byte
	id := objectID{length: uint64(length)}
	copy(id.digest[:], h.Sum(sum[:0]))
	return id
}

// putObject stores b in a region of type typ, or returns the offset of an identical
// object already stored when dedup is set.
func (w *Writer) putObject(typ int, b []byte, dedup bool) (regionOffset, error) {
	var id objectID
	if dedup {
		sum := sha256.Sum256(b)
		id = objectID{length: uint64(len(b))}
		copy(id.digest[:], sum[:])
		if off, ok, err := w.dedupGet(id); err != nil || ok {
			return off, err
		}
	}
	rw := w.regions[typ]
	if err := rw.align(); err != nil {
		return 0, err
	}
	start := rw.size
	if start > offsetMask-int64(len(b)) {
		return 0, fmt.Errorf("%w: region %d exceeds 2^48 bytes", ErrTooLarge, rw.index)
	}
	if _, err := rw.Write(b); err != nil {
		return 0, err
	}
	off := makeOffset(rw.index, start)
	if dedup {
		if err := w.dedupPut(id, off, false); err != nil {
			return 0, err
		}
		if err := rw.addID(id, start); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// addID lists the object id stored at off; offsets only grow, which is the order
// of the object ID file.
func (rw *regionWriter) addID(id objectID, off int64) error {
	if rw.nids > 0 && off <= rw.lastID {
		return fmt.Errorf("cimfs: object at %d listed after one at %d", off, rw.lastID)
	}
	var b [objectIDEntrySize]byte
	binary.LittleEndian.PutUint64(b[:], id.length)
	copy(b[8:32], id.digest[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(off))
	rw.ids.append(b[:])
	rw.nids++
	rw.lastID = off
	return rw.ids.err
}

// putPrefixed stores a uint16 length followed by b (security descriptors, reparse
// buffers).
func (w *Writer) putPrefixed(b []byte) (regionOffset, error) {
	if len(b) > 0xFFFF {
		return 0, fmt.Errorf("%w: %d-byte object with a 16-bit length", ErrTooLarge, len(b))
	}
	o := make([]byte, 2+len(b))
	binary.LittleEndian.PutUint16(o, uint16(len(b)))
	copy(o[2:], b)
	return w.putObject(regionMetadata, o, true)
}

// dataWriter streams one data stream into a region.
type dataWriter struct {
	rw        *regionWriter
	start     int64 // offset before alignment padding
	dataStart int64
	size      int64
	written   int64
	h         hash.Hash
	allZero   bool
	sparse    bool
	target    *stream
}

func (w *Writer) startData(target *stream, size int64, sparse bool) error {
	*target = stream{typ: streamData}
	if size == 0 {
		return nil
	}
	if size > offsetMask {
		return fmt.Errorf("%w: stream of %d bytes", ErrTooLarge, size)
	}
	typ := regionData
	if size < smallDataLimit {
		typ = regionSmallData
	}
	rw := w.regions[typ]
	d := &dataWriter{rw: rw, start: rw.size, size: size, h: sha256.New(), allZero: true, sparse: sparse, target: target}
	if err := rw.align(); err != nil {
		return err
	}
	d.dataStart = rw.size
	w.data = d
	return nil
}

// Write writes data of the current stream: the file's unnamed stream after Add,
// or the alternate stream after AddStream.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	d := w.data
	if d == nil {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, w.fail(fmt.Errorf("%w: write with no data stream open", ErrWriter))
	}
	if int64(len(p)) > d.size-d.written {
		return 0, w.fail(fmt.Errorf("%w: %d bytes beyond the declared size %d", ErrWriter, int64(len(p))-(d.size-d.written), d.size))
	}
	if d.sparse && d.allZero {
		for _, c := range p {
			if c != 0 {
				d.allZero = false
				break
			}
		}
	}
	d.h.Write(p)
	n, err := d.rw.Write(p)
	d.written += int64(n)
	if err != nil {
		return n, w.fail(err)
	}
	return n, nil
}

// ReadFrom copies r into the current stream.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{w}, r, make([]byte, 256<<10))
}

// endData completes the current data stream, deduplicating it.
func (w *Writer) endData() error {
	d := w.data
	if d == nil {
		return nil
	}
	w.data = nil
	if d.written != d.size {
		return fmt.Errorf("%w: %d of %d bytes written", ErrWriter, d.written, d.size)
	}
	if d.sparse && d.allZero {
		// A sparse stream without data: the sparse bit alone says "all zeros".
		*d.target = stream{typ: streamData, length: d.size, sparse: true}
		return d.rw.truncate(d.start)
	}
	id := digestOf(d.h, d.size)
	if off, ok, err := w.dedupGet(id); err != nil {
		return err
	} else if ok {
		*d.target = stream{offset: off, length: d.size, typ: streamData}
		return d.rw.truncate(d.start)
	}
	off := makeOffset(d.rw.index, d.dataStart)
	if err := w.dedupPut(id, off, false); err != nil {
		return err
	}
	if err := d.rw.addID(id, d.dataStart); err != nil {
		return err
	}
	*d.target = stream{offset: off, length: d.size, typ: streamData}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) ready() error {
	if w.done {
		return fmt.Errorf("%w: writer closed", ErrWriter)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.endData(); err != nil {
		return w.fail(err)
	}
	return nil
}

// lookupParent walks to the directory holding the last component of p, creating
// missing directories when create is set, and returns its dirKey.
func (w *Writer) lookupParent(p string, create bool) (uint64, string, error) {
	comps := splitPath(p)
	if len(comps) == 0 {
		return 0, "", ErrInvalidName
	}
	dirs := comps[:len(comps)-1]
	var dirKey uint64 = rootIndex
	keys := make([]string, len(dirs))
	for i, c := range dirs {
		keys[i] = string(nameKey(w.upcase, c))
	}
	full := strings.Join(keys, `\`)
	if k, ok := w.tree.dirs[full]; ok && len(dirs) > 0 {
		// A directory path seen recently: every component exists and is a
		// directory, so only their names are checked, as the walk below would.
		for _, c := range dirs {
			if err := checkName(c); err != nil {
				return 0, "", err
			}
		}
		dirKey = k
	} else {
		for i, c := range dirs {
			if err := checkName(c); err != nil {
				return 0, "", err
			}
			e, ok, err := w.tree.lookup(dirKey, keys[i])
			if err != nil {
				return 0, "", err
			}
			if !ok {
				if !create {
					return 0, "", ErrNotFound
				}
				idx, err := w.newDir()
				if err != nil {
					return 0, "", err
				}
				if _, err := w.tree.link(dirKey, c, keys[i], idx, idx, ixDir, nil); err != nil {
					return 0, "", err
				}
				e = ixEntry{flags: ixDir, file: idx, dirKey: idx}
			}
			if e.flags&ixDir == 0 {
				return 0, "", ErrNotDir
			}
			dirKey = e.dirKey
		}
		if len(dirs) > 0 {
			if len(w.tree.dirs) >= dirCacheMax {
				clear(w.tree.dirs)
			}
			w.tree.dirs[full] = dirKey
		}
	}
	last := comps[len(comps)-1]
	if err := checkName(last); err != nil {
		return 0, "", err
	}
	if utf16Len(p) > maxPathUnits {
		return 0, "", ErrInvalidName
	}
	return dirKey, last, nil
}

// Add adds a file or directory with its metadata; for a file, exactly h.Size bytes
// of data follow through Write. Missing parent directories are created with default
// metadata. A name that exists already is replaced; a directory replacing a
// directory keeps its children.
func (w *Writer) Add(h *Header) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	if err := w.add(h); err != nil {
		return w.fail(&PathError{Op: "add", Path: h.Name, Err: err})
	}
	return nil
}

func (w *Writer) add(h *Header) error {
	dirKey, base, err := w.lookupParent(h.Name, true)
	if err != nil {
		return err
	}
	isDir := h.Info.FileAttributes&winfile.AttrDirectory != 0
	if h.Size < 0 || (isDir || h.NoDataStream) && h.Size != 0 {
		return fmt.Errorf("%w: size %d", ErrWriter, h.Size)
	}
	f := &wfile{info: h.Info, isDir: isDir, noData: h.NoDataStream && !isDir, added: true}
	if h.SecurityDescriptor != nil {
		if f.sd, err = w.putPrefixed(h.SecurityDescriptor); err != nil {
			return err
		}
	}
	if len(h.ExtendedAttributes) > 0 {
		if len(h.ExtendedAttributes) > maxEALength {
			return fmt.Errorf("%w: %d bytes of extended attributes", ErrTooLarge, len(h.ExtendedAttributes))
		}
		if _, err := winfile.DecodeExtendedAttributes(h.ExtendedAttributes); err != nil {
			return err
		}
		if f.ea, err = w.putObject(regionMetadata, h.ExtendedAttributes, true); err != nil {
			return err
		}
		f.eaLen = uint16(len(h.ExtendedAttributes))
	}
	if h.ReparseData != nil {
		if len(h.ReparseData) < winfile.ReparseHeaderSize {
			return fmt.Errorf("%w: reparse buffer of %d bytes", winfile.ErrInvalidFormat, len(h.ReparseData))
		}
		f.rpTag = binary.LittleEndian.Uint32(h.ReparseData)
		if f.rp, err = w.putPrefixed(h.ReparseData); err != nil {
			return err
		}
		f.info.FileAttributes |= winfile.AttrReparsePoint
	} else {
		f.info.FileAttributes &^= winfile.AttrReparsePoint
	}
	k := string(nameKey(w.upcase, base))
	old, had, err := w.tree.lookup(dirKey, k)
	if err != nil {
		return err
	}
	idx, err := w.tree.newFile()
	if err != nil {
		return err
	}
	if isDir {
		f.dirKey = idx
		if had && old.flags&ixDir != 0 {
			f.dirKey = old.dirKey
		}
		f.data = stream{typ: streamLinkTable}
	}
	var op *ixEntry
	if had {
		op = &old
		if old.flags&ixDir != 0 && !isDir {
			clear(w.tree.dirs) // paths through the directory replaced
		}
	}
	if _, err := w.tree.link(dirKey, base, k, idx, f.dirKey, fileFlags(f), op); err != nil {
		return err
	}
	w.cur, w.curIndex = f, idx
	if !isDir {
		return w.startData(&f.data, h.Size, h.Info.FileAttributes&winfile.AttrSparseFile != 0)
	}
	return nil
}

// AddStream adds an alternate data stream of size bytes to the file added last;
// its data follows through Write. name is the bare stream name; a leading colon and
// a ":$DATA" suffix are accepted and dropped.
func (w *Writer) AddStream(name string, size int64) error {
	if err := w.ready(); err != nil {
		return err
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, ":"), ":$DATA")
	if w.cur == nil {
		return w.fail(&PathError{Op: "add stream", Path: name, Err: fmt.Errorf("%w: no file to add it to", ErrWriter)})
	}
	if err := checkStreamName(name); err != nil {
		return w.fail(&PathError{Op: "add stream", Path: name, Err: err})
	}
	if size < 0 {
		return w.fail(&PathError{Op: "add stream", Path: name, Err: fmt.Errorf("%w: size %d", ErrWriter, size)})
	}
	k := string(nameKey(w.upcase, name))
	for _, s := range w.cur.streams {
		if string(nameKey(w.upcase, s.name)) == k {
			return w.fail(&PathError{Op: "add stream", Path: name, Err: ErrExists})
		}
	}
	w.cur.streams = append(w.cur.streams, adsEntry{name: name})
	if err := w.startData(&w.cur.streams[len(w.cur.streams)-1].s, size, false); err != nil {
		return w.fail(err)
	}
	return nil
}

// AddLink adds name as a hard link to the existing file target (not a directory).
// In a fork, a link to a file the image inherits gets a copy of that file's record
// instead (see the package documentation, "Forks").
func (w *Writer) AddLink(name, target string) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	tn, err := w.find(target)
	if err != nil {
		return w.fail(&PathError{Op: "link", Path: name, Err: fmt.Errorf("target %s: %w", target, err)})
	}
	if tn.flags&ixDir != 0 {
		return w.fail(&PathError{Op: "link", Path: name, Err: fmt.Errorf("target %s: %w", target, ErrIsDir)})
	}
	dirKey, base, err := w.lookupParent(name, true)
	if err != nil {
		return w.fail(&PathError{Op: "link", Path: name, Err: err})
	}
	k := string(nameKey(w.upcase, base))
	old, had, err := w.tree.lookup(dirKey, k)
	if err != nil {
		return w.fail(&PathError{Op: "link", Path: name, Err: err})
	}
	if had && old.entry == tn.entry {
		return nil
	}
	if tn.flags&ixAdded == 0 {
		// A file inherited from a parent: the new name shares its record (one file
		// ID, a real hard link, as NTFS links across layer folders on one volume),
		// and the image lists the name among its links to inherited files (see
		// Image.Links), so the layer's export names it as a link to the parent's file.
		w.links = append(w.links, [2]string{strings.Join(splitPath(name), `\`), strings.Join(splitPath(target), `\`)})
	}
	var op *ixEntry
	if had {
		op = &old
		if old.flags&ixDir != 0 {
			clear(w.tree.dirs)
		}
	}
	if _, err := w.tree.link(dirKey, base, k, tn.file, 0, tn.flags, op); err != nil {
		return w.fail(&PathError{Op: "link", Path: name, Err: err})
	}
	return nil
}

// Lookup reports what the image being written holds at name (inherited from the
// parent or added since): whether it exists, is a directory, and carries a reparse
// buffer (a symbolic link, a junction, ...).
func (w *Writer) Lookup(name string) (found, isDir, reparse bool) {
	n, err := w.find(name)
	if err != nil {
		return false, false, false
	}
	return true, n.flags&ixDir != 0, n.flags&ixReparse != 0
}

func (w *Writer) find(p string) (ixEntry, error) {
	dirKey, base, err := w.lookupParent(p, false)
	if err != nil {
		return ixEntry{}, err
	}
	n, ok, err := w.tree.lookup(dirKey, string(nameKey(w.upcase, base)))
	if err != nil {
		return ixEntry{}, err
	}
	if !ok {
		return ixEntry{}, ErrNotFound
	}
	return n, nil
}

// Remove deletes name and everything under it from the image, and records the
// removal (the image's list of removals, see Image.Removals). A name that does not
// exist is only recorded, as a layer's whiteout of a path its parents may hold.
func (w *Writer) Remove(name string) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	dirKey, base, err := w.lookupParent(name, false)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotDir) {
		return w.fail(&PathError{Op: "remove", Path: name, Err: err})
	}
	if err == nil {
		k := string(nameKey(w.upcase, base))
		old, had, err := w.tree.lookup(dirKey, k)
		if err == nil && had {
			err = w.tree.unlink(dirKey, k, old)
			clear(w.tree.dirs)
		}
		if err != nil {
			return w.fail(&PathError{Op: "remove", Path: name, Err: err})
		}
	}
	w.removals = append(w.removals, strings.Join(splitPath(name), `\`))
	return nil
}

// Abort discards everything written.
func (w *Writer) Abort() error {
	w.done = true
	for _, rw := range w.regions {
		if rw != nil {
			rw.wait()
			rw.f.Close()
			rw.ids.close()
		}
	}
	if w.tree != nil {
		w.tree.close()
	}
	w.dedup.close()
	return os.RemoveAll(w.staging)
}

// Close writes the metadata, commits the image under its name and releases the
// writer. On error nothing is visible under the final names.
func (w *Writer) Close() error {
	if err := w.ready(); err != nil {
		w.Abort()
		return err
	}
	err := w.commit()
	w.Abort() // removes the (now empty) staging folder
	if err != nil {
		return &PathError{Op: "close", Path: filepath.Join(w.dir, w.name), Err: err}
	}
	return nil
}

// Slots of the commit array, per fileIndex: the file ID, a directory's link table
// stream and the alternate stream table's offset.
const (
	commitSlot     = 32
	commitID       = 0
	commitDirData  = 8
	commitStreamTb = 24
)

func (w *Writer) commit() error {
	if err := w.finishFile(); err != nil {
		return err
	}
	t := w.tree
	state, err := newDiskArray(w.cache, filepath.Join(w.staging, "commit"), commitSlot)
	if err != nil {
		return err
	}
	defer state.close()
	order, err := newSpillFile(filepath.Join(w.staging, "order")) // fileIndex by file ID
	if err != nil {
		return err
	}
	defer order.close()
	dirList, err := newSpillFile(filepath.Join(w.staging, "dirs")) // listings, in dirs order
	if err != nil {
		return err
	}
	defer dirList.close()
	le := binary.LittleEndian

	// File IDs in depth-first order of sorted names; a hard-linked file takes the ID
	// of its first name. Each directory's sorted listing is kept for its link table.
	var nfiles uint64
	var slot [commitSlot]byte
	var number func(idx uint64, depth int) error
	number = func(idx uint64, depth int) error {
		if err := state.get(idx, slot[:]); err != nil {
			return err
		}
		if le.Uint64(slot[commitID:]) != 0 {
			return nil
		}
		nfiles++
		if nfiles > 1<<32-2 {
			return fmt.Errorf("%w: %d files", ErrTooLarge, nfiles)
		}
		var b [8]byte
		le.PutUint64(b[:], nfiles)
		if err := state.putAt(idx, commitID, b[:]); err != nil {
			return err
		}
		le.PutUint64(b[:], idx)
		order.append(b[:])
		f, err := t.getFile(idx, false)
		if err != nil {
			return err
		}
		if !f.isDir {
			return nil
		}
		if depth > maxPathUnits/2 {
			return fmt.Errorf("cimfs: directory nesting deeper than a path allows")
		}
		cs, err := t.children(f.dirKey, w.upcase)
		if err != nil {
			return err
		}
		var h [12]byte
		le.PutUint64(h[:], idx)
		le.PutUint32(h[8:], uint32(len(cs)))
		dirList.append(h[:])
		for _, c := range cs {
			var e [10]byte
			le.PutUint64(e[:], c.file)
			le.PutUint16(e[8:], uint16(len(c.name)))
			dirList.append(e[:])
			dirList.append([]byte(c.name))
		}
		for _, c := range cs {
			if err := number(c.file, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := number(rootIndex, 0); err != nil {
		return err
	}
	if order.err != nil || dirList.err != nil {
		return errors.Join(order.err, dirList.err)
	}

	// Link tables of the directories, in the order they were numbered.
	dr, err := dirList.reader()
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(dr, 64<<10)
	for {
		var h [12]byte
		if _, err := io.ReadFull(br, h[:]); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		idx, n := le.Uint64(h[:]), int(le.Uint32(h[8:]))
		names := make([]string, n)
		vals := make([]byte, 4*n)
		for i := range n {
			var e [10]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return err
			}
			nb := make([]byte, le.Uint16(e[8:]))
			if _, err := io.ReadFull(br, nb); err != nil {
				return err
			}
			names[i] = string(nb)
			if err := state.get(le.Uint64(e[:]), slot[:]); err != nil {
				return err
			}
			le.PutUint32(vals[4*i:], uint32(le.Uint64(slot[commitID:])))
		}
		ds := stream{typ: streamLinkTable}
		if n > 0 {
			b := encodeLinkTable(names, vals, 4)
			off, err := w.putObject(regionMetadata, b, false)
			if err != nil {
				return err
			}
			ds = stream{offset: off, length: int64(len(b)), typ: streamLinkTable}
		}
		var sb [streamSize]byte
		ds.put(sb[:])
		if err := state.putAt(idx, commitDirData, sb[:]); err != nil {
			return err
		}
	}

	// Alternate stream tables, then the file tables, both in file ID order.
	forFiles := func(fn func(idx uint64) error) error {
		or, err := order.reader()
		if err != nil {
			return err
		}
		br := bufio.NewReaderSize(or, 64<<10)
		var b [8]byte
		for {
			if _, err := io.ReadFull(br, b[:]); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			if err := fn(le.Uint64(b[:])); err != nil {
				return err
			}
		}
	}
	err = forFiles(func(idx uint64) error {
		f, err := t.getFile(idx, true)
		if err != nil || len(f.streams) == 0 {
			return err
		}
		off, err := w.writeStreamTable(f)
		if err != nil {
			return err
		}
		var b [8]byte
		le.PutUint64(b[:], uint64(off))
		return state.putAt(idx, commitStreamTb, b[:])
	})
	if err != nil {
		return err
	}
	var ftd []byte
	recSize := recordSize
	if w.opts.public {
		recSize = recordSizeV2
	}
	var rb [recordSize]byte
	tab := make([]byte, 0, filesPerTable*recSize)
	flushTable := func() error {
		if len(tab) == 0 {
			return nil
		}
		off, err := w.putObject(regionMetadata, tab, false)
		if err != nil {
			return err
		}
		e := make([]byte, ftdEntrySize)
		le.PutUint64(e, uint64(off))
		le.PutUint16(e[8:], uint16(len(tab)/recSize))
		le.PutUint16(e[10:], uint16(recSize))
		ftd = append(ftd, e...)
		tab = tab[:0]
		return nil
	}
	err = forFiles(func(idx uint64) error {
		f, err := t.getFile(idx, false)
		if err != nil {
			return err
		}
		if err := state.get(idx, slot[:]); err != nil {
			return err
		}
		if f.isDir {
			f.data = getStream(slot[commitDirData:])
		}
		if f.nstreams > 0 {
			f.streamTableOff = regionOffset(le.Uint64(slot[commitStreamTb:]))
		}
		r := f.record()
		r.encode(rb[:])
		tab = append(tab, rb[:recSize]...)
		if len(tab) == filesPerTable*recSize {
			return flushTable()
		}
		return nil
	})
	if err == nil {
		err = flushTable()
	}
	if err != nil {
		return err
	}
	ftdOff, err := w.putObject(regionMetadata, ftd, false)
	if err != nil {
		return err
	}
	fsOff, err := w.putObject(regionMetadata, filesystem{
		upcase: w.upcaseOff, ftd: ftdOff, ftdCount: uint32(len(ftd) / ftdEntrySize), root: 1,
	}.encode(), false)
	if err != nil {
		return err
	}
	hdr := &fsHeader{fsOffset: fsOff, parents: w.parents, extension: !w.opts.public}
	if (len(w.removals) > 0 || len(w.links) > 0) && hdr.extension {
		b := encodeRemovals(w.removals, w.links)
		if hdr.removals, err = w.putObject(regionMetadata, b, false); err != nil {
			return err
		}
		hdr.removalLen = uint32(len(b))
	}

	// Object ID files and the content hash that names the region set.
	sum := sha256.New()
	sum.Write([]byte(w.name))
	sum.Write(w.opts.seed)
	for _, p := range w.parents {
		a := p.ID.ToArray()
		sum.Write(a[:])
	}
	oidHeads := make([][]byte, regionCount)
	for t, rw := range w.regions {
		if err := rw.drain(); err != nil {
			return err
		}
		oidHeads[t] = encodeObjectIDFile(t, uint8(t), nil)
		le.PutUint32(oidHeads[t][44:], uint32(rw.nids))
		sum.Write(oidHeads[t])
		r, err := rw.ids.reader()
		if err != nil {
			return err
		}
		if _, err := io.Copy(sum, r); err != nil {
			return err
		}
	}
	meta := w.regions[regionMetadata]
	if _, err := io.Copy(sum, io.NewSectionReader(meta.f, 0, meta.size)); err != nil {
		return err
	}
	var h [sha256.Size]byte
	hdr.own = regionSet{ID: guid.NewV5(regionSetNamespace, sum.Sum(h[:0])), Count: regionCount}
	if !w.opts.regionID.IsZero() {
		hdr.own.ID = w.opts.regionID
	}
	for _, p := range w.parents {
		if p.ID == hdr.own.ID {
			return fmt.Errorf("%w: region set %v is already used by a parent", ErrExists, p.ID)
		}
	}
	// Sync everything in the staging folder, rename the region and object ID files,
	// then commit the .cim file, which is what makes the image exist.
	cp := filepath.Join(w.staging, "image")
	if err := writeFileSync(cp, encodeFSHeader(hdr), nil); err != nil {
		return err
	}
	type move struct{ from, to string }
	var moves []move
	for t, rw := range w.regions {
		if err := rw.f.Sync(); err != nil {
			return err
		}
		if err := rw.f.Close(); err != nil {
			return err
		}
		op := filepath.Join(w.staging, fmt.Sprintf("objectid_%d", t))
		r, err := rw.ids.reader()
		if err != nil {
			return err
		}
		if err := writeFileSync(op, oidHeads[t], r); err != nil {
			return err
		}
		moves = append(moves, move{rw.path, filepath.Join(w.dir, hdr.own.regionName(t))},
			move{op, filepath.Join(w.dir, hdr.own.objectIDName(t))})
	}
	done := 0
	for _, m := range moves {
		if err = os.Rename(m.from, m.to); err != nil {
			break
		}
		done++
	}
	if err == nil {
		err = renameNoReplace(cp, filepath.Join(w.dir, w.name))
		if errors.Is(err, fs.ErrExist) {
			// Another writer committed this name meanwhile. Identical content has
			// identical region file names, so leave them: they may be its files.
			return ErrExists
		}
	}
	if err != nil {
		for _, m := range moves[:done] {
			os.Remove(m.to) // unreferenced without the .cim file
		}
		return err
	}
	return syncDir(w.dir)
}

// writeFileSync writes b and then what rest reads (when not nil) to a new file
// p, and syncs it.
func writeFileSync(p string, b []byte, rest io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if rest != nil {
		if _, err := io.Copy(f, rest); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeStreamTable stores a file's alternate stream table in the prefixed form:
// a uint32 byte count, then the link table, placed so the table is 8-byte aligned.
func (w *Writer) writeStreamTable(f *wfile) (regionOffset, error) {
	ss := slices.Clone(f.streams)
	slices.SortFunc(ss, func(a, b adsEntry) int {
		return compareKeys(nameKey(w.upcase, a.name), nameKey(w.upcase, b.name))
	})
	names := make([]string, len(ss))
	vals := make([]byte, len(ss)*streamSize)
	for i, s := range ss {
		names[i] = s.name
		s.s.put(vals[i*streamSize:])
	}
	tab := encodeLinkTable(names, vals, streamSize)
	rw := w.regions[regionMetadata]
	if err := rw.align(); err != nil {
		return 0, err
	}
	if _, err := rw.Write(make([]byte, 4)); err != nil { // keep the table itself 8-aligned
		return 0, err
	}
	obj := binary.LittleEndian.AppendUint32(nil, uint32(len(tab)))
	obj = append(obj, tab...)
	start := rw.size
	if _, err := rw.Write(obj); err != nil {
		return 0, err
	}
	return makeOffset(rw.index, start), nil
}

// encodeLinkTable lays out a link table: header, values (valSize bytes each), name
// offsets, names.
func encodeLinkTable(names []string, vals []byte, valSize int) []byte {
	n := len(names)
	head := linkHeaderSize + n*(valSize+4)
	b := make([]byte, head, head+n*16)
	copy(b[linkHeaderSize:], vals)
	for i, name := range names {
		binary.LittleEndian.PutUint32(b[linkHeaderSize+n*valSize+4*i:], uint32(len(b)))
		b = binary.LittleEndian.AppendUint16(b, uint16(utf16Len(name)))
		b = appendUTF16(b, name)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	return b
}

// encodeRemovals lists removed paths: uint32 count, then per path a uint16 length
// in UTF-16 units and the UTF-16LE path with '\' separators.
//
// The links to inherited files follow, when there are any: uint32 count, then per
// link the name and the target in the same form. Readers of the removal list alone
// stop before them.
func encodeRemovals(paths []string, links [][2]string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(paths)))
	for _, p := range paths {
		b = binary.LittleEndian.AppendUint16(b, uint16(utf16Len(p)))
		b = appendUTF16(b, p)
	}
	if len(links) > 0 {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(links)))
		for _, l := range links {
			for _, p := range l {
				b = binary.LittleEndian.AppendUint16(b, uint16(utf16Len(p)))
				b = appendUTF16(b, p)
			}
		}
	}
	return b
}

func (f *wfile) record() *record {
	a := f.info.FileAttributes
	r := &record{
		eaLength:    f.eaLen,
		reparseTag:  f.rpTag,
		times:       [4]uint64{uint64(f.info.CreationTime), uint64(f.info.LastWriteTime), uint64(f.info.ChangeTime), uint64(f.info.LastAccessTime)},
		data:        f.data,
		sd:          f.sd,
		ea:          f.ea,
		reparse:     f.rp,
		streamTable: f.streamTableOff,
		attributes:  a,
		extFlags:    extValid,
	}
	for _, m := range attrFlags {
		if a&m.attr != 0 {
			r.flags |= m.flag
		}
	}
	if f.noData {
		r.extFlags |= extNoDataStream
	}
	if f.added {
		r.extFlags |= extAdded
	}
	return r
}

var attrFlags = []struct {
	attr uint32
	flag uint16
}{
	{winfile.AttrReadOnly, flagReadOnly},
	{winfile.AttrHidden, flagHidden},
	{winfile.AttrSystem, flagSystem},
	{winfile.AttrArchive, flagArchive},
	{winfile.AttrSparseFile, flagSparse},
}

// Destroy removes the image whose .cim file is at path and its own region and object
// ID files; ancestors' files stay. The .cim file goes first, so an interrupted
// Destroy leaves no half image, only unreferenced region files. Images forked from
// this one become unreadable.
func Destroy(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	h, err := parseFSHeader(b, filepath.Base(path))
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.Remove(path); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	own := map[string]bool{}
	for i := 0; i < int(h.own.Count); i++ {
		own[strings.ToLower(h.own.regionName(i))] = true
		own[strings.ToLower(h.own.objectIDName(i))] = true
	}
	var errs []error
	for _, e := range ents {
		if own[strings.ToLower(e.Name())] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return syncDir(dir)
}
