//go:build unix

package winlayer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Reader walks a layer folder in a fixed order and returns its entries with their
// Windows metadata: Files/, then Hives/, then UtilityVM/, each directory before its
// children, children in byte-wise name order, and the names a directory removes
// (whiteouts) right after the directory itself. The same folder always gives the same
// sequence. Memory use is bounded by the depth of the tree and the width of one
// directory, not by the size of the layer.
//
// Files added to Files/ by other tools are read too, with metadata derived from the Linux
// file (times, and ARCHIVE or DIRECTORY attributes). A Reader is not safe for concurrent
// use.
type Reader struct {
	ctx   context.Context
	root  string
	store *metaStore // nil for a folder without metadata
	stack []*frame
	links map[fileKey]string
	// The current entry's directory (owned by the stack) and name in it.
	curDirFD int
	curBase  string
	data     *os.File
	cur      *Entry
	err      error
}

type frame struct {
	fd        int // the directory, open: names are looked up relative to it
	dir       string
	names     []string
	whiteouts []string
}

// NewReader opens the layer at path for reading. In the folder form a layer holds its
// whole content, so no parent is needed to read it.
func NewReader(ctx context.Context, path string) (*Reader, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &LayerError{Layer: path, Op: "open", Err: err}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, &LayerError{Layer: abs, Op: "open", Err: err}
	}
	if !st.IsDir() {
		return nil, &LayerError{Layer: abs, Op: "open", Err: ErrNotLayer}
	}
	r := &Reader{ctx: ctx, root: abs, links: map[fileKey]string{}, curDirFD: -1}
	if _, err := os.Stat(filepath.Join(abs, metaDB)); err == nil {
		if r.store, err = openStore(filepath.Join(abs, metaDB)); err != nil {
			return nil, &LayerError{Layer: abs, Op: "open", Err: err}
		}
	}
	var top []string
	for _, n := range []string{FilesDir, HivesDir, UtilityVMDir} {
		if fi, err := os.Lstat(filepath.Join(abs, n)); err == nil && fi.IsDir() {
			top = append(top, n)
		}
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.Close()
		return nil, &LayerError{Layer: abs, Op: "open", Err: err}
	}
	r.stack = []*frame{{fd: fd, names: top}}
	return r, nil
}

// Next advances to the next entry. It returns io.EOF at the end.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.data != nil {
		r.data.Close()
		r.data = nil
	}
	e, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	r.cur = e
	return e, nil
}

func (r *Reader) next() (*Entry, error) {
	for len(r.stack) > 0 {
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		f := r.stack[len(r.stack)-1]
		if len(f.whiteouts) > 0 {
			n := f.whiteouts[0]
			f.whiteouts = f.whiteouts[1:]
			return &Entry{Name: n, Removed: true}, nil
		}
		if len(f.names) == 0 {
			unix.Close(f.fd)
			r.stack = r.stack[:len(r.stack)-1]
			continue
		}
		base := f.names[0]
		f.names = f.names[1:]
		name := base
		if f.dir != "" {
			name = f.dir + "/" + base
		}
		r.curDirFD, r.curBase = f.fd, base
		e, implicit, isDir, err := r.entry(f.fd, base, name)
		if err != nil {
			return nil, &EntryError{Layer: r.root, Entry: name, Op: "read", Err: err}
		}
		if isDir {
			fd, err := unix.Openat(f.fd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, &EntryError{Layer: r.root, Entry: name, Op: "read", Err: err}
			}
			nf := &frame{fd: fd, dir: name}
			r.stack = append(r.stack, nf)
			names, err := readDirNames(fd)
			if err != nil {
				return nil, &EntryError{Layer: r.root, Entry: name, Op: "read", Err: err}
			}
			nf.names = names
			slices.Sort(nf.names) // byte-wise, as Go's walk and hcsshim's export
			if r.store != nil {
				nf.whiteouts = r.store.whiteoutsIn(name)
			}
		}
		if implicit {
			continue
		}
		return e, nil
	}
	return nil, io.EOF
}

// entry builds the Entry for one name.
func (r *Reader) entry(dirFD int, base, name string) (e *Entry, implicit, isDir bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, false, false, err
	}
	isDir = isDirMode(st.Mode)
	var rec *record
	if r.store != nil {
		if rec, err = r.store.get(name); err != nil {
			return nil, false, false, err
		}
	}
	if rec != nil && rec.entry.Name != name {
		rec = nil // a file put there by another tool with a different case
	}
	if rec == nil {
		target := ""
		if isSymlinkMode(st.Mode) {
			target, _ = os.Readlink(filepath.Join(r.root, name))
		}
		e = defaultEntry(name, &st, target)
	} else {
		if rec.implicit && isDir {
			return nil, true, true, nil
		}
		e = &rec.entry
		e.dataID = rec.dataID
		if rec.sdHash != nil {
			if e.SecurityDescriptor, err = r.store.sd(rec.sdHash); err != nil {
				return nil, false, false, err
			}
		}
		if isRegMode(st.Mode) {
			e.Size = st.Size
		}
		// The Linux file type wins over a stale DIRECTORY bit, except for links:
		// a directory symbolic link or junction is a directory to Windows.
		switch {
		case isDir:
			e.Info.FileAttributes |= winfile.AttrDirectory
		case !isSymlinkMode(st.Mode):
			e.Info.FileAttributes &^= winfile.AttrDirectory
		}
	}
	if !isDir && st.Nlink > 1 {
		k := fileKey{uint64(st.Dev), st.Ino}
		if first, ok := r.links[k]; ok {
			e.LinkTarget = first
		} else {
			r.links[k] = name
		}
	}
	if rec != nil && e.LinkTarget == "" {
		e.ParentLink = rec.parentLink
	}
	// Streams in the order Windows lists them (NTFS keeps a file's attributes
	// sorted by upcased name), the order a CIM keeps them in: every form of a
	// layer then reads back the same.
	slices.SortStableFunc(e.Streams, func(a, b Stream) int { return strings.Compare(foldName(a.Name), foldName(b.Name)) })
	return e, false, isDir, nil
}

// defaultEntry derives Windows metadata for a file that has no record.
func defaultEntry(name string, st *unix.Stat_t, linkTarget string) *Entry {
	ft := func(ts unix.Timespec) winfile.Filetime { return winfile.NewFiletime(time.Unix(ts.Sec, ts.Nsec)) }
	e := &Entry{Name: name}
	e.Info.LastWriteTime = ft(st.Mtim)
	e.Info.CreationTime = e.Info.LastWriteTime
	e.Info.LastAccessTime = ft(st.Atim)
	e.Info.ChangeTime = ft(st.Ctim)
	switch {
	case isDirMode(st.Mode):
		e.Info.FileAttributes = winfile.AttrDirectory
	case isSymlinkMode(st.Mode):
		e.Info.FileAttributes = winfile.AttrReparsePoint
		if b, err := winfile.NewLinkReparsePoint(strings.ReplaceAll(linkTarget, "/", `\`), false).Encode(); err == nil {
			e.Reparse = b
		}
	default:
		e.Info.FileAttributes = winfile.AttrArchive
		e.Size = st.Size
	}
	return e
}

// Read reads the unnamed data stream of the current entry.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.cur == nil || r.cur.Removed || r.cur.IsDir() || r.cur.LinkTarget != "" {
		return 0, io.EOF
	}
	if r.data == nil {
		f, err := r.openData(r.cur)
		if err != nil {
			return 0, &EntryError{Layer: r.root, Entry: r.cur.Name, Op: "read", Err: err}
		}
		if f == nil {
			return 0, io.EOF
		}
		r.data = f
	}
	n, err := r.data.Read(p)
	if err != nil && err != io.EOF {
		err = &EntryError{Layer: r.root, Entry: r.cur.Name, Op: "read", Err: err}
	}
	return n, err
}

// openData opens the file holding an entry's data, or returns nil when it has none.
func (r *Reader) openData(e *Entry) (*os.File, error) {
	if e.dataID != 0 {
		return os.Open(r.streamPath(e.dataID))
	}
	if e.Size == 0 || len(e.Reparse) > 0 && e.linkReparse() != nil {
		return nil, nil
	}
	if e == r.cur && r.curDirFD >= 0 {
		fd, err := unix.Openat(r.curDirFD, r.curBase, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), e.Name), nil
	}
	return os.OpenFile(filepath.Join(r.root, e.Name), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// readDirNames lists a directory open as fd, sorted byte-wise (as Go's walk and
// hcsshim's export order names).
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(dup), "")
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// ReadDataInto reads the whole unnamed data stream of the current entry into p, whose
// length must be the entry's size. It is OpenData and ReadFull in a few system calls,
// for the many small files of a layer.
func (r *Reader) ReadDataInto(p []byte) error {
	e := r.cur
	if e == nil || e.dataID != 0 || r.curDirFD < 0 {
		rc, err := r.OpenData()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadFull(rc, p)
		return err
	}
	fd, err := unix.Openat(r.curDirFD, r.curBase, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &EntryError{Layer: r.root, Entry: e.Name, Op: "read", Err: err}
	}
	defer unix.Close(fd)
	for done := 0; done < len(p); {
		n, err := unix.Read(fd, p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &EntryError{Layer: r.root, Entry: e.Name, Op: "read", Err: err}
		}
		if n == 0 {
			return &EntryError{Layer: r.root, Entry: e.Name, Op: "read", Err: io.ErrUnexpectedEOF}
		}
		done += n
	}
	return nil
}

// OpenData opens the unnamed data stream of the current entry, also for a hard link
// (whose data Read does not return, since it belongs to the first name). It returns
// an empty reader for entries without data.
func (r *Reader) OpenData() (io.ReadCloser, error) {
	if r.cur == nil || r.cur.Removed || r.cur.IsDir() {
		return io.NopCloser(strings.NewReader("")), nil
	}
	f, err := r.openData(r.cur)
	if err != nil {
		return nil, &EntryError{Layer: r.root, Entry: r.cur.Name, Op: "read", Err: err}
	}
	if f == nil {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return f, nil
}

// DataRanges returns the allocated ranges of the current entry's data as (offset,
// length) pairs, for writing sparse backup streams. A file without holes gives one range.
func (r *Reader) DataRanges() ([][2]int64, error) {
	if r.cur == nil || r.cur.Size == 0 {
		return nil, nil
	}
	f, err := r.openData(r.cur)
	if err != nil || f == nil {
		return nil, err
	}
	defer f.Close()
	return dataRanges(f, r.cur.Size)
}

func dataRanges(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return [][2]int64{{0, size}}, nil // no SEEK_DATA: treat as dense
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		end = min(end, size)
		out = append(out, [2]int64{start, end - start})
		off = end
	}
	return out, nil
}

func (r *Reader) streamPath(id uint64) string {
	return filepath.Join(r.root, streamsDir, fmt.Sprintf("%016x", id))
}

// OpenStream opens an alternate data stream of the current entry.
func (r *Reader) OpenStream(s Stream) (io.ReadCloser, error) {
	if s.id == 0 {
		return nil, fmt.Errorf("%w: stream %s has no content file", ErrCorrupt, s.Name)
	}
	f, err := os.Open(r.streamPath(s.id))
	if err != nil {
		name := ""
		if r.cur != nil {
			name = r.cur.Name
		}
		return nil, &EntryError{Layer: r.root, Entry: name + s.Name, Op: "read", Err: err}
	}
	return f, nil
}

// Close releases the reader.
func (r *Reader) Close() error {
	if r.data != nil {
		r.data.Close()
		r.data = nil
	}
	for _, f := range r.stack {
		unix.Close(f.fd)
	}
	r.stack, r.curDirFD = nil, -1
	if r.err == nil {
		r.err = ErrClosed
	}
	if r.store != nil {
		s := r.store
		r.store = nil
		return s.close()
	}
	return nil
}
