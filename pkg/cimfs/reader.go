package cimfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// FileID identifies a file record of an image; 0 is "no file".
type FileID uint32

// Image is an open CIM image: its .cim file and every region file of its own and
// its ancestors' region sets. A forked image describes its whole merged tree, so an
// Image of a fork is already the union of its parents and its own changes, with
// removed names absent. An Image is safe for concurrent use.
type Image struct {
	fsys    fs.FS
	dir     string // directory of the image in fsys
	display string // directory for messages ("" when opened through OpenFS)
	name    string // path of the .cim file, for messages
	hdr     *fsHeader
	regions []*regionFile
	fs      filesystem
	upcase  []uint16
	ftd     []ftdEntry

	mu        sync.Mutex
	dirCache  map[FileID][]byte
	dirCached int
}

type regionFile struct {
	f         io.ReaderAt
	c         io.Closer
	path      string // for messages
	size      int64
	index     int    // index within its set
	typ       uint8  // region type from the header
	objectIDs string // name of the object ID file in the image's directory, or "" if absent
}

const dirCacheLimit = 4 << 20

// maxTableBytes bounds one link table: 64 Ki entries of 255-unit names fit in it.
const maxTableBytes = 64 << 20

// Open opens the image whose .cim file is at path. Region files are looked up in the
// same directory, case-insensitively; object ID files are optional.
func Open(path string) (*Image, error) {
	dir := filepath.Dir(path)
	return openFS(os.DirFS(dir), filepath.Base(path), dir)
}

// OpenFS opens the image whose .cim file is name in fsys; its region files are in
// the same directory of fsys. The files must implement io.ReaderAt, as os.DirFS's
// and fstest.MapFS's do.
func OpenFS(fsys fs.FS, name string) (*Image, error) {
	return openFS(fsys, name, "")
}

func openFS(fsys fs.FS, name, display string) (_ *Image, err error) {
	im := &Image{fsys: fsys, dir: path.Dir(name), display: display, dirCache: map[FileID][]byte{}}
	im.name = im.displayPath(path.Base(name))
	b, err := im.readFile(path.Base(name), 1<<20)
	if err != nil {
		return nil, err
	}
	hdr, err := parseFSHeader(b, path.Base(name))
	if err != nil {
		return nil, err
	}
	im.hdr = hdr
	defer func() {
		if err != nil {
			im.Close()
		}
	}()
	ents, err := fs.ReadDir(fsys, im.dir)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, e := range ents {
		l := strings.ToLower(e.Name())
		if _, ok := names[l]; !ok || e.Name() == l {
			names[l] = e.Name()
		}
	}
	for _, set := range append(append([]regionSet(nil), hdr.parents...), hdr.own) {
		for i := 0; i < int(set.Count); i++ {
			rf, err := im.openRegion(names, set, i)
			if err != nil {
				return nil, err
			}
			im.regions = append(im.regions, rf)
		}
	}
	fsb, err := im.read(hdr.fsOffset, filesystemSize, "filesystem object")
	if err != nil {
		return nil, err
	}
	im.fs = parseFilesystem(fsb)
	ub, err := im.read(im.fs.upcase, upcaseSize, "upcase table")
	if err != nil {
		return nil, err
	}
	im.upcase = make([]uint16, upcaseEntries)
	for i := range im.upcase {
		im.upcase[i] = binary.LittleEndian.Uint16(ub[2*i:])
	}
	if im.fs.ftdCount > (1<<32-1)/filesPerTable+1 {
		return nil, im.errAt(im.fs.ftd, "file table directory", "%d entries", im.fs.ftdCount)
	}
	fb, err := im.read(im.fs.ftd, int64(im.fs.ftdCount)*ftdEntrySize, "file table directory")
	if err != nil {
		return nil, err
	}
	for i := 0; i < int(im.fs.ftdCount); i++ {
		e := parseFTDEntry(fb[i*ftdEntrySize:])
		obj := fmt.Sprintf("file table %d", i)
		if e.count > filesPerTable {
			return nil, im.errAt(im.fs.ftd, "file table directory", "entry %d: %d records, more than %d", i, e.count, filesPerTable)
		}
		if e.entrySize < recordSizeV1 && e.count > 0 {
			return nil, im.errAt(im.fs.ftd, "file table directory", "entry %d: record size %d, less than %d", i, e.entrySize, recordSizeV1)
		}
		if e.count > 0 {
			if _, err := im.check(e.offset, int64(e.count)*int64(e.entrySize), obj); err != nil {
				return nil, err
			}
		}
		im.ftd = append(im.ftd, e)
	}
	if _, err := im.record(FileID(im.fs.root)); err != nil {
		return nil, err
	}
	return im, nil
}

func (im *Image) displayPath(name string) string {
	if im.display != "" {
		return filepath.Join(im.display, name)
	}
	return path.Join(im.dir, name)
}

// readFile reads a whole small file of the image's directory.
func (im *Image) readFile(name string, limit int64) ([]byte, error) {
	f, err := im.fsys.Open(path.Join(im.dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, formatErr(name, "file", 0, "larger than %d bytes", limit)
	}
	return b, nil
}

func (im *Image) openRegion(names map[string]string, set regionSet, i int) (*regionFile, error) {
	want := set.regionName(i)
	real, ok := names[strings.ToLower(want)]
	if !ok {
		return nil, &PathError{Op: "open region", Path: im.displayPath(want), Err: ErrNotFound}
	}
	f, err := im.fsys.Open(path.Join(im.dir, real))
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	ra, ok := f.(io.ReaderAt)
	if !ok {
		f.Close()
		return nil, &PathError{Op: "open region", Path: im.displayPath(real), Err: errors.New("file system gives no random access (io.ReaderAt)")}
	}
	rf := &regionFile{f: ra, c: f, path: im.displayPath(real), size: st.Size(), index: i}
	hb := make([]byte, min(rf.size, regionHeaderSize))
	if _, err := ra.ReadAt(hb, 0); err != nil && err != io.EOF {
		f.Close()
		return nil, err
	}
	rh, err := parseRegionHeader(hb, real)
	if err != nil {
		f.Close()
		return nil, err
	}
	if int(rh.index) != i {
		f.Close()
		return nil, formatErr(real, "region header", 32, "index %d, want %d", rh.index, i)
	}
	rf.typ = rh.typ
	if o, ok := names[strings.ToLower(set.objectIDName(i))]; ok {
		rf.objectIDs = o
	}
	return rf, nil
}

// Close closes the region files.
func (im *Image) Close() error {
	var errs []error
	for _, r := range im.regions {
		errs = append(errs, r.c.Close())
	}
	im.regions = nil
	return errors.Join(errs...)
}

func (im *Image) errAt(o regionOffset, object, format string, args ...any) *FormatError {
	file := filepath.Base(im.name)
	if o != 0 && o.region() < len(im.regions) {
		file = filepath.Base(im.regions[o.region()].path)
	}
	return formatErr(file, object, o.offset(), format, args...)
}

// check validates that n bytes at o lie inside a region.
func (im *Image) check(o regionOffset, n int64, object string) (*regionFile, error) {
	if o == 0 {
		return nil, im.errAt(o, object, "null offset")
	}
	if o.region() >= len(im.regions) {
		return nil, im.errAt(o, object, "region index %d, image has %d regions", o.region(), len(im.regions))
	}
	if o.offset() == 0 {
		return nil, im.errAt(o, object, "offset 0 inside the region header")
	}
	r := im.regions[o.region()]
	if n < 0 || o.offset() > r.size || n > r.size-o.offset() {
		return nil, im.errAt(o, object, "%d bytes do not fit in the %d-byte region", n, r.size)
	}
	return r, nil
}

// read reads n bytes at o.
func (im *Image) read(o regionOffset, n int64, object string) ([]byte, error) {
	r, err := im.check(o, n, object)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := r.f.ReadAt(b, o.offset()); err != nil {
		return nil, fmt.Errorf("cimfs: reading %s from %s: %w", object, r.path, err)
	}
	return b, nil
}

// readPrefixed reads a uint16 length and that many bytes.
func (im *Image) readPrefixed(o regionOffset, object string) ([]byte, error) {
	lb, err := im.read(o, 2, object)
	if err != nil {
		return nil, err
	}
	return im.read(o+2, int64(binary.LittleEndian.Uint16(lb)), object)
}

// record reads the file record of id.
func (im *Image) record(id FileID) (record, error) {
	obj := fmt.Sprintf("file record %d", id)
	if id == 0 {
		return record{}, im.errAt(im.fs.ftd, obj, "file ID 0")
	}
	t, slot := int(id-1)/filesPerTable, int(id-1)%filesPerTable
	if t >= len(im.ftd) || slot >= int(im.ftd[t].count) {
		return record{}, im.errAt(im.fs.ftd, obj, "no such file in the file tables")
	}
	e := im.ftd[t]
	size := int64(min(e.entrySize, recordSize))
	b, err := im.read(e.offset+regionOffset(int64(slot)*int64(e.entrySize)), size, obj)
	if err != nil {
		return record{}, err
	}
	r := parseRecord(b)
	if r.data.typ > streamPEImage {
		return r, im.errAt(e.offset, obj, "unsupported stream type %d", r.data.typ)
	}
	if int(e.entrySize) != recordSize || !im.hdr.extension {
		// Bytes 96-103 are the hostcompute extension only in images that say so;
		// elsewhere they are absent or belong to a record layout this package
		// does not know.
		r.extFlags, r.attributes = 0, 0
	}
	return r, nil
}

func (r *record) isDir() bool { return r.data.typ == streamLinkTable }

// attrs derives the attributes: the extension's full value when present, otherwise
// the record flags; DIRECTORY and REPARSE_POINT always follow the structure.
func (r *record) attrs() uint32 {
	var a uint32
	if r.extFlags&extValid != 0 {
		a = r.attributes &^ (winfile.AttrDirectory | winfile.AttrReparsePoint)
	} else {
		for _, m := range attrFlags {
			if r.flags&m.flag != 0 {
				a |= m.attr
			}
		}
	}
	if r.isDir() {
		a |= winfile.AttrDirectory
	}
	if r.reparse != 0 {
		a |= winfile.AttrReparsePoint
	}
	return a
}

func (r *record) basicInfo() winfile.BasicInfo {
	return winfile.BasicInfo{
		CreationTime:   winfile.Filetime(r.times[0]),
		LastWriteTime:  winfile.Filetime(r.times[1]),
		ChangeTime:     winfile.Filetime(r.times[2]),
		LastAccessTime: winfile.Filetime(r.times[3]),
		FileAttributes: r.attrs(),
	}
}

// FileInfo describes one file record.
type FileInfo struct {
	ID FileID
	// Info holds the times and the attributes (see Header.Info for what a record
	// keeps).
	Info winfile.BasicInfo
	// Size is the length of the unnamed data stream; 0 for directories.
	Size int64
	// NoDataStream: the file had no unnamed data stream (hostcompute extension).
	NoDataStream bool
	// Added: the record was added or replaced by this image rather than inherited
	// from a parent (hostcompute extension; false in images without it).
	Added bool
	// ReparseTag is the tag of the reparse buffer, 0 if none.
	ReparseTag uint32
	// EALength is the byte size of the extended attribute buffer.
	EALength int
	// SecurityDescriptorSet reports whether the file has a security descriptor.
	SecurityDescriptorSet bool
	// Streams are the alternate data streams in stream table order.
	Streams []StreamInfo

	im  *Image
	rec record
}

// StreamInfo names an alternate data stream and gives its length.
type StreamInfo struct {
	Name string
	Size int64

	s stream
}

// IsDir reports whether the file is a directory.
func (fi *FileInfo) IsDir() bool { return fi.rec.isDir() }

// SecurityDescriptor returns the file's self-relative security descriptor, or nil.
func (fi *FileInfo) SecurityDescriptor() ([]byte, error) {
	if fi.rec.sd == 0 {
		return nil, nil
	}
	return fi.im.readPrefixed(fi.rec.sd, fmt.Sprintf("security descriptor of file %d", fi.ID))
}

// ExtendedAttributes returns the file's FILE_FULL_EA_INFORMATION chain, or nil.
func (fi *FileInfo) ExtendedAttributes() ([]byte, error) {
	if fi.rec.ea == 0 || fi.rec.eaLength == 0 {
		return nil, nil
	}
	return fi.im.read(fi.rec.ea, int64(fi.rec.eaLength), fmt.Sprintf("extended attributes of file %d", fi.ID))
}

// ReparseData returns the file's complete reparse buffer, or nil.
func (fi *FileInfo) ReparseData() ([]byte, error) {
	if fi.rec.reparse == 0 {
		return nil, nil
	}
	return fi.im.readPrefixed(fi.rec.reparse, fmt.Sprintf("reparse buffer of file %d", fi.ID))
}

// Root returns the root directory's ID.
func (im *Image) Root() FileID { return FileID(im.fs.root) }

// Name returns the path the image was opened from.
func (im *Image) Name() string { return im.name }

// StatID describes the file with the given ID.
func (im *Image) StatID(id FileID) (*FileInfo, error) {
	rec, err := im.record(id)
	if err != nil {
		return nil, err
	}
	fi := &FileInfo{ID: id, Info: rec.basicInfo(), im: im, rec: rec, ReparseTag: rec.reparseTag,
		EALength: int(rec.eaLength), SecurityDescriptorSet: rec.sd != 0}
	if rec.extFlags&extValid != 0 {
		fi.NoDataStream = rec.extFlags&extNoDataStream != 0
		fi.Added = rec.extFlags&extAdded != 0
	}
	if !rec.isDir() {
		fi.Size = rec.data.length
	}
	if rec.streamTable != 0 {
		ss, err := im.streamTable(id, rec)
		if err != nil {
			return nil, err
		}
		fi.Streams = ss
	}
	return fi, nil
}

// Stat describes the file at path.
func (im *Image) Stat(path string) (*FileInfo, error) {
	id, err := im.Lookup(path)
	if err != nil {
		return nil, err
	}
	return im.StatID(id)
}

// DirEntry is one name in a directory.
type DirEntry struct {
	Name string
	ID   FileID
}

// linkTable returns a directory's link table bytes (cached).
func (im *Image) linkTable(id FileID, rec *record) ([]byte, error) {
	if !rec.isDir() {
		return nil, &PathError{Op: "readdir", Path: fmt.Sprintf("file %d", id), Err: ErrNotDir}
	}
	if rec.data.length == 0 {
		return nil, nil
	}
	im.mu.Lock()
	b, ok := im.dirCache[id]
	im.mu.Unlock()
	if ok {
		return b, nil
	}
	obj := fmt.Sprintf("link table of file %d", id)
	if rec.data.length > maxTableBytes {
		return nil, im.errAt(rec.data.offset, obj, "%d bytes, more than the %d this reader accepts", rec.data.length, maxTableBytes)
	}
	b, err := im.read(rec.data.offset, rec.data.length, obj)
	if err != nil {
		return nil, err
	}
	if err := checkLinkTable(b, 4); err != nil {
		return nil, im.errAt(rec.data.offset, obj, "%s", err)
	}
	im.mu.Lock()
	if im.dirCached+len(b) > dirCacheLimit {
		im.dirCache, im.dirCached = map[FileID][]byte{}, 0
	}
	im.dirCache[id] = b
	im.dirCached += len(b)
	im.mu.Unlock()
	return b, nil
}

// checkLinkTable checks a link table's header and name offsets (not the order).
func checkLinkTable(b []byte, valSize int) error {
	if len(b) < linkHeaderSize {
		return fmt.Errorf("%d bytes, shorter than the header", len(b))
	}
	length := binary.LittleEndian.Uint32(b)
	count := binary.LittleEndian.Uint32(b[4:])
	if length < linkHeaderSize || int64(length) > int64(len(b)) {
		return fmt.Errorf("length %d outside 8..%d", length, len(b))
	}
	if int64(count) > (int64(length)-linkHeaderSize)/int64(valSize+4) {
		return fmt.Errorf("%d links do not fit in %d bytes", count, length)
	}
	for i := 0; i < int(count); i++ {
		if _, err := linkName(b[:length], int(count), valSize, i); err != nil {
			return err
		}
	}
	return nil
}

func linkCount(b []byte) int {
	if len(b) < linkHeaderSize {
		return 0
	}
	return int(binary.LittleEndian.Uint32(b[4:]))
}

// linkName returns the UTF-16 bytes of entry i's name.
func linkName(b []byte, count, valSize, i int) ([]byte, error) {
	p := linkHeaderSize + count*valSize + 4*i
	off := int64(binary.LittleEndian.Uint32(b[p:]))
	if off+2 > int64(len(b)) {
		return nil, fmt.Errorf("name %d at %d is outside the table", i, off)
	}
	n := int64(binary.LittleEndian.Uint16(b[off:]))
	if off+2+2*n > int64(len(b)) {
		return nil, fmt.Errorf("name %d of %d units at %d is outside the table", i, n, off)
	}
	if n == 0 || n > maxNameUnits {
		return nil, fmt.Errorf("name %d has %d units", i, n)
	}
	return b[off+2 : off+2+2*n], nil
}

// ReadDirID lists a directory in link table order (sorted by upper-cased name).
func (im *Image) ReadDirID(id FileID) ([]DirEntry, error) {
	rec, err := im.record(id)
	if err != nil {
		return nil, err
	}
	return im.readDirID(uint32(id), &rec)
}

func (im *Image) readDirID(id uint32, rec *record) ([]DirEntry, error) {
	b, err := im.linkTable(FileID(id), rec)
	if err != nil {
		return nil, err
	}
	n := linkCount(b)
	out := make([]DirEntry, n)
	for i := range out {
		nb, _ := linkName(b, n, 4, i) // checked by linkTable
		out[i] = DirEntry{Name: decodeUTF16(nb), ID: FileID(binary.LittleEndian.Uint32(b[linkHeaderSize+4*i:]))}
	}
	return out, nil
}

// ReadDir lists the directory at path.
func (im *Image) ReadDir(path string) ([]DirEntry, error) {
	id, err := im.Lookup(path)
	if err != nil {
		return nil, err
	}
	return im.ReadDirID(id)
}

// LookupIn finds name in directory dir, case-insensitively through the image's
// upcase table.
func (im *Image) LookupIn(dir FileID, name string) (FileID, error) {
	rec, err := im.record(dir)
	if err != nil {
		return 0, err
	}
	if !rec.isDir() {
		return 0, ErrNotDir
	}
	b, err := im.linkTable(dir, &rec)
	if err != nil {
		return 0, err
	}
	i, ok := searchLinks(im.upcase, b, 4, name)
	if !ok {
		return 0, ErrNotFound
	}
	id := FileID(binary.LittleEndian.Uint32(b[linkHeaderSize+4*i:]))
	if id == 0 {
		return 0, ErrNotFound
	}
	return id, nil
}

// searchLinks binary-searches a checked link table for name.
func searchLinks(t []uint16, b []byte, valSize int, name string) (int, bool) {
	key := nameKey(t, name)
	n := linkCount(b)
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		nb, err := linkName(b, n, valSize, m)
		if err != nil {
			return 0, false
		}
		switch c := compareStored(t, key, nb); {
		case c == 0:
			return m, true
		case c < 0:
			hi = m
		default:
			lo = m + 1
		}
	}
	return 0, false
}

// Lookup resolves a path ('/' or '\' separated, relative to the root).
func (im *Image) Lookup(path string) (FileID, error) {
	id := im.Root()
	comps := splitPath(path)
	if len(comps) > maxPathUnits/2 {
		return 0, &PathError{Op: "lookup", Path: path, Err: ErrInvalidName}
	}
	for _, c := range comps {
		next, err := im.LookupIn(id, c)
		if err != nil {
			return 0, &PathError{Op: "lookup", Path: path, Err: err}
		}
		id = next
	}
	return id, nil
}

// streamTable reads a file's alternate stream table. The table is stored either
// with a uint32 byte count before it (the form this package writes, read by the
// public reader) or without one; the two are told apart by the first two words.
func (im *Image) streamTable(id FileID, rec record) ([]StreamInfo, error) {
	obj := fmt.Sprintf("stream table of file %d", id)
	r, err := im.check(rec.streamTable, 8, obj)
	if err != nil {
		return nil, err
	}
	var h [8]byte
	if _, err := r.f.ReadAt(h[:], rec.streamTable.offset()); err != nil {
		return nil, err
	}
	off := rec.streamTable
	n := binary.LittleEndian.Uint32(h[:])
	if n == binary.LittleEndian.Uint32(h[4:]) {
		off += 4
	}
	b, err := im.read(off, int64(n), obj)
	if err != nil {
		return nil, err
	}
	if err := checkLinkTable(b, streamSize); err != nil {
		return nil, im.errAt(off, obj, "%s", err)
	}
	cnt := linkCount(b)
	out := make([]StreamInfo, cnt)
	for i := range out {
		nb, _ := linkName(b, cnt, streamSize, i)
		s := getStream(b[linkHeaderSize+i*streamSize:])
		if s.typ != streamData {
			return nil, im.errAt(off, obj, "stream %d has type %d, want 0", i, s.typ)
		}
		out[i] = StreamInfo{Name: decodeUTF16(nb), Size: s.length, s: s}
	}
	return out, nil
}

// File reads one stream of a file. It implements io.ReaderAt (safe for concurrent
// use) and io.Reader/io.Seeker (not).
type File struct {
	im   *Image
	s    stream
	pe   *peImage
	name string
	pos  int64
}

var (
	_ io.ReaderAt   = (*File)(nil)
	_ io.ReadSeeker = (*File)(nil)
)

// OpenID opens the unnamed data stream of a file.
func (im *Image) OpenID(id FileID) (*File, error) {
	rec, err := im.record(id)
	if err != nil {
		return nil, err
	}
	if rec.isDir() {
		return nil, &PathError{Op: "open", Path: fmt.Sprintf("file %d", id), Err: ErrIsDir}
	}
	return im.openStream(rec.data, fmt.Sprintf("data of file %d", id))
}

// Open opens the unnamed data stream of the file at path; "path:name" opens the
// alternate stream name.
func (im *Image) Open(path string) (*File, error) {
	p, sname, hasStream := strings.Cut(path, ":")
	id, err := im.Lookup(p)
	if err != nil {
		return nil, err
	}
	if hasStream {
		return im.OpenStreamID(id, strings.TrimSuffix(sname, ":$DATA"))
	}
	return im.OpenID(id)
}

// OpenStreamID opens the alternate data stream name of a file.
func (im *Image) OpenStreamID(id FileID, name string) (*File, error) {
	fi, err := im.StatID(id)
	if err != nil {
		return nil, err
	}
	key := nameKey(im.upcase, name)
	for _, s := range fi.Streams {
		if compareKeys(key, nameKey(im.upcase, s.Name)) == 0 {
			return im.openStream(s.s, fmt.Sprintf("stream %s of file %d", s.Name, id))
		}
	}
	return nil, &PathError{Op: "open stream", Path: fmt.Sprintf("file %d:%s", id, name), Err: ErrNotFound}
}

func (im *Image) openStream(s stream, object string) (*File, error) {
	f := &File{im: im, s: s, name: object}
	if s.sparse || s.length == 0 {
		return f, nil
	}
	switch s.typ {
	case streamData:
		if _, err := im.check(s.offset, s.length, object); err != nil {
			return nil, err
		}
	case streamPEImage:
		pe, err := im.readPE(s, object)
		if err != nil {
			return nil, err
		}
		f.pe = pe
	default:
		return nil, im.errAt(s.offset, object, "stream type %d cannot be read as data", s.typ)
	}
	return f, nil
}

// Size returns the stream's length.
func (f *File) Size() int64 { return f.s.length }

// ReadAt reads len(p) bytes at off.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("cimfs: negative offset %d", off)
	}
	if off >= f.s.length {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if rest := f.s.length - off; int64(n) > rest {
		n, err = int(rest), io.EOF
	}
	p = p[:n]
	switch {
	case f.s.sparse:
		clear(p)
	case f.pe != nil:
		if rerr := f.pe.readAt(f.im, p, off); rerr != nil {
			return 0, rerr
		}
	default:
		r := f.im.regions[f.s.offset.region()]
		if _, rerr := r.f.ReadAt(p, f.s.offset.offset()+off); rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("cimfs: reading %s: %w", f.name, rerr)
		}
	}
	return n, err
}

// Read reads from the current position.
func (f *File) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek sets the position for Read.
func (f *File) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		off += f.s.length
	}
	if off < 0 {
		return 0, fmt.Errorf("cimfs: seek to negative offset")
	}
	f.pos = off
	return off, nil
}

// WriteTo copies the rest of the stream to w.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(w, io.NewSectionReader(f, f.pos, f.s.length-f.pos), make([]byte, 256<<10))
}

// peImage is a PE image stream: the expanded image bytes and the mapping from
// logical file offsets to positions in them.
type peImage struct {
	data     regionOffset
	dataLen  int64
	mappings []peMapping
}

type peMapping struct{ fileOffset, delta uint32 }

func (im *Image) readPE(s stream, object string) (*peImage, error) {
	h, err := im.read(s.offset, peHeaderSize, object)
	if err != nil {
		return nil, err
	}
	n := int64(binary.LittleEndian.Uint16(h[20:]))
	mb, err := im.read(s.offset+peHeaderSize, 8*n, object)
	if err != nil {
		return nil, err
	}
	pe := &peImage{
		data:    regionOffset(binary.LittleEndian.Uint64(h)),
		dataLen: int64(binary.LittleEndian.Uint64(h[8:]) &^ (1 << 63)),
	}
	var prev uint32
	for i := int64(0); i < n; i++ {
		m := peMapping{binary.LittleEndian.Uint32(mb[8*i:]), binary.LittleEndian.Uint32(mb[8*i+4:])}
		if i > 0 && m.fileOffset <= prev {
			return nil, im.errAt(s.offset, object, "PE mapping %d is not ascending", i)
		}
		prev = m.fileOffset
		pe.mappings = append(pe.mappings, m)
	}
	// Every logical byte must map inside the image data.
	for i, m := range pe.mappings {
		end := s.length
		if i+1 < len(pe.mappings) {
			end = min(end, int64(pe.mappings[i+1].fileOffset))
		}
		if int64(m.fileOffset) < end && int64(m.delta)+end > pe.dataLen {
			return nil, im.errAt(s.offset, object, "PE mapping %d reaches beyond the image data", i)
		}
	}
	if len(pe.mappings) == 0 || pe.mappings[0].fileOffset > 0 {
		if min(s.length, firstOffset(pe)) > pe.dataLen {
			return nil, im.errAt(s.offset, object, "PE image data shorter than the file")
		}
	}
	if _, err := im.check(pe.data, pe.dataLen, object); err != nil {
		return nil, err
	}
	return pe, nil
}

func firstOffset(pe *peImage) int64 {
	if len(pe.mappings) == 0 {
		return 1<<63 - 1
	}
	return int64(pe.mappings[0].fileOffset)
}

func (pe *peImage) readAt(im *Image, p []byte, off int64) error {
	r := im.regions[pe.data.region()]
	for len(p) > 0 {
		delta, segEnd := int64(0), firstOffset(pe)
		for i, m := range pe.mappings {
			if int64(m.fileOffset) > off {
				break
			}
			delta = int64(m.delta)
			segEnd = 1<<63 - 1
			if i+1 < len(pe.mappings) {
				segEnd = int64(pe.mappings[i+1].fileOffset)
			}
		}
		n := min(int64(len(p)), segEnd-off)
		pos := off + delta
		if pos < 0 || pos+n > pe.dataLen {
			return fmt.Errorf("%w: PE read beyond the image data", ErrInvalidFormat)
		}
		if _, err := r.f.ReadAt(p[:n], pe.data.offset()+pos); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// Removals returns the paths ('\' separated) that this image removed from its
// parents, in the order they were removed (hostcompute extension; empty for
// images without it).
func (im *Image) Removals() ([]string, error) {
	if !im.hdr.extension || im.hdr.removals == 0 {
		return nil, nil
	}
	b, err := im.read(im.hdr.removals, int64(im.hdr.removalLen), "removal list")
	if err != nil {
		return nil, err
	}
	return parseRemovals(b, func(off int64, f string, a ...any) error {
		return im.errAt(im.hdr.removals+regionOffset(off), "removal list", f, a...)
	})
}

func parseRemovals(b []byte, bad func(int64, string, ...any) error) ([]string, error) {
	out, _, err := parsePathList(b, 0, 1, bad)
	return out, err
}

// Links returns the names this image added as hard links to files it inherits from
// its parents, each with the target's name ('\' separated, hostcompute extension;
// empty for images without it). The names share the target's file ID.
func (im *Image) Links() ([][2]string, error) {
	if !im.hdr.extension || im.hdr.removals == 0 {
		return nil, nil
	}
	b, err := im.read(im.hdr.removals, int64(im.hdr.removalLen), "removal list")
	if err != nil {
		return nil, err
	}
	bad := func(off int64, f string, a ...any) error {
		return im.errAt(im.hdr.removals+regionOffset(off), "link list", f, a...)
	}
	_, end, err := parsePathList(b, 0, 1, bad)
	if err != nil || end == len(b) {
		return nil, err
	}
	flat, _, err := parsePathList(b, end, 2, bad)
	if err != nil {
		return nil, err
	}
	links := make([][2]string, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		links = append(links, [2]string{flat[i], flat[i+1]})
	}
	return links, nil
}

// parsePathList reads, from offset p, a uint32 count of groups of per paths, each a
// uint16 length in UTF-16 units and the units. It returns the paths and the offset
// after them.
func parsePathList(b []byte, p, per int, bad func(int64, string, ...any) error) ([]string, int, error) {
	if len(b)-p < 4 {
		return nil, p, bad(int64(p), "%d bytes, shorter than the count", len(b)-p)
	}
	n := int(binary.LittleEndian.Uint32(b[p:]))
	if n > (len(b)-p)/2 {
		return nil, p, bad(int64(p), "%d entries cannot fit in %d bytes", n, len(b)-p)
	}
	var out []string
	p += 4
	for i := 0; i < n*per; i++ {
		if p+2 > len(b) {
			return nil, p, bad(int64(p), "entry %d beyond the list", i)
		}
		l := int(binary.LittleEndian.Uint16(b[p:]))
		if p+2+2*l > len(b) || l == 0 {
			return nil, p, bad(int64(p), "entry %d of %d units does not fit", i, l)
		}
		out = append(out, decodeUTF16(b[p+2:p+2+2*l]))
		p += 2 + 2*l
	}
	return out, p, nil
}

// Parents returns the number of ancestor region sets the image references.
func (im *Image) Parents() int { return len(im.hdr.parents) }
