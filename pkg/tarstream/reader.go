package tarstream

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Errors of sparse files, beside archive/tar's tar.ErrHeader and tar.ErrFieldTooLong.
var (
	// ErrSparseTooLong: a sparse map longer than 1 MiB or with more than 2^20 fragments.
	ErrSparseTooLong = errors.New("tarstream: sparse map too long")
	// ErrMissingData: a sparse file's map refers to more data than the entry holds.
	ErrMissingData = errors.New("tarstream: sparse file references data the entry does not hold")
	// ErrUnreferencedData: a sparse file holds more data than its map refers to.
	ErrUnreferencedData = errors.New("tarstream: sparse file holds data its map does not refer to")
)

const readBufferSize = 256 << 10

// Reader reads the entries of a tar stream, as archive/tar's Reader does (same
// entries, same contents, an error where it gives one), with the offsets of
// every entry's headers and data known.
//
// A Reader is not safe for concurrent use. Errors are sticky.
type Reader struct {
	src    io.Reader
	file   *os.File // src read with pread from base, when src is a regular file
	base   int64
	buf    []byte
	r, w   int
	pos    int64 // stream offset of buf[r]
	srcErr error

	err     error
	name    string // name of the current entry, for errors
	hdrOff  int64  // offset of the current entry's first header block
	dataOff int64  // offset of the current entry's data
	remain  int64  // bytes of the data section left
	pad     int64  // padding after the data section
	holes   []sparseEntry
	spPos   int64
	sparse  bool
	blk     [blockSize]byte
	special []byte
	size    int64 // size of file when last looked at

	lastUname, lastGname string
}

// NewReader returns a Reader of the tar stream r. When r is an *os.File open on a
// regular file, the Reader reads it with pread from its current offset on (leaving
// the file offset where it was), and DataSection offers entries' data for the
// kernel to copy.
func NewReader(r io.Reader) *Reader {
	tr := &Reader{src: r, buf: make([]byte, readBufferSize)}
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil {
				tr.file, tr.base = f, off
			}
		}
	}
	return tr
}

// Offset returns the byte offset, in the stream, of the current entry's first header
// block (its PAX or GNU extension headers included).
func (tr *Reader) Offset() int64 { return tr.hdrOff }

// DataOffset returns the byte offset, in the stream, of the current entry's data.
func (tr *Reader) DataOffset() int64 { return tr.dataOff }

// DataSection reports where the rest of the current entry's data lies in the
// underlying file: the file, the file offset and the byte count. ok is false when
// the source is not a regular file, the entry is sparse (its data is not its
// contents) or nothing is left. A caller that copies the bytes itself (with
// copy_file_range) then calls Skip with the count it copied.
func (tr *Reader) DataSection() (f *os.File, off, n int64, ok bool) {
	if tr.file == nil || tr.sparse || tr.remain == 0 || tr.err != nil {
		return nil, 0, 0, false
	}
	return tr.file, tr.base + tr.pos, tr.remain, true
}

// Skip moves n bytes on in the current entry's data without reading them, for a
// caller that copied them from DataSection. n must not exceed what is left.
func (tr *Reader) Skip(n int64) error {
	if tr.err != nil {
		return tr.err
	}
	if n < 0 || n > tr.remain || tr.sparse {
		return &Error{Entry: tr.name, Offset: tr.pos, Err: errors.New("tarstream: skip beyond the entry's data")}
	}
	tr.remain -= n
	if b := int64(tr.w - tr.r); n <= b {
		tr.r += int(n)
		tr.pos += n
		return nil
	}
	if tr.file != nil {
		tr.pos += n
		tr.r, tr.w = 0, 0
		return nil
	}
	if err := tr.discard(n); err != nil {
		tr.err = &Error{Entry: tr.name, Offset: tr.pos, Err: err}
		return tr.err
	}
	return nil
}

// fill reads more of the source into the buffer; it returns the source's error
// (io.EOF at its end) when nothing more came.
func (tr *Reader) fill() error {
	if tr.srcErr != nil {
		return tr.srcErr
	}
	if tr.r > 0 {
		n := copy(tr.buf, tr.buf[tr.r:tr.w])
		tr.r, tr.w = 0, n
	}
	for tries := 0; tries < 100; tries++ {
		n, err := tr.readSrc(tr.buf[tr.w:])
		tr.w += n
		if err != nil {
			tr.srcErr = err
		}
		if n > 0 || err != nil {
			return nil
		}
	}
	tr.srcErr = io.ErrNoProgress
	return nil
}

// readSrc reads the source at the stream offset just past the buffered bytes.
func (tr *Reader) readSrc(p []byte) (int, error) {
	if tr.file != nil {
		n, err := tr.file.ReadAt(p, tr.base+tr.pos+int64(tr.w-tr.r))
		if n > 0 && err == io.EOF {
			err = nil // reported by the next read, which returns nothing
		}
		return n, err
	}
	return tr.src.Read(p)
}

// read reads up to len(p) bytes of the stream, like io.Reader.
func (tr *Reader) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if tr.r == tr.w {
		if tr.srcErr != nil {
			return 0, tr.srcErr
		}
		if len(p) >= len(tr.buf) {
			// Large reads go straight into the caller's buffer.
			tr.r, tr.w = 0, 0
			n, err := tr.readSrc(p)
			tr.pos += int64(n)
			if err != nil {
				tr.srcErr = err
				if n > 0 {
					err = nil
				}
			}
			return n, err
		}
		tr.r, tr.w = 0, 0
		tr.fill()
		if tr.r == tr.w {
			return 0, tr.srcErr
		}
	}
	n := copy(p, tr.buf[tr.r:tr.w])
	tr.r += n
	tr.pos += int64(n)
	return n, nil
}

// readFull is io.ReadFull on the stream: io.EOF when nothing was read,
// io.ErrUnexpectedEOF when part was.
func (tr *Reader) readFull(p []byte) error {
	n := 0
	for n < len(p) {
		m, err := tr.read(p[n:])
		n += m
		if err != nil {
			if n == len(p) {
				return nil
			}
			if err == io.EOF && n > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// discard skips n bytes of the stream; io.ErrUnexpectedEOF if it ends first.
func (tr *Reader) discard(n int64) error {
	for n > 0 {
		if b := int64(tr.w - tr.r); b > 0 {
			k := min(b, n)
			tr.r += int(k)
			tr.pos += k
			n -= k
			continue
		}
		if tr.file != nil && tr.srcErr == nil {
			// Skip by offset when the file holds the bytes; otherwise read on,
			// to find where it ends.
			if tr.base+tr.pos+n > tr.size {
				if st, err := tr.file.Stat(); err == nil {
					tr.size = st.Size()
				}
			}
			if tr.base+tr.pos+n <= tr.size {
				tr.pos += n
				return nil
			}
		}
		tr.r, tr.w = 0, 0
		tr.fill()
		if tr.r == tr.w {
			if tr.srcErr == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return tr.srcErr
		}
	}
	return nil
}

// readData reads the physical data section of the current entry.
func (tr *Reader) readData(p []byte) (int, error) {
	if int64(len(p)) > tr.remain {
		p = p[:tr.remain]
	}
	var n int
	var err error
	if len(p) > 0 {
		n, err = tr.read(p)
		tr.remain -= int64(n)
	}
	switch {
	case err == io.EOF && tr.remain > 0:
		return n, io.ErrUnexpectedEOF
	case err == nil && tr.remain == 0:
		return n, io.EOF
	default:
		return n, err
	}
}

// readDataFull fills p from the data section; io.EOF only when nothing was read
// (tryReadFull in archive/tar).
func (tr *Reader) readDataFull(p []byte) (int, error) {
	n := 0
	var err error
	for n < len(p) && err == nil {
		var m int
		m, err = tr.readData(p[n:])
		n += m
	}
	if n == len(p) && err == io.EOF {
		err = nil
	}
	return n, err
}

// Read reads the current entry's contents; sparse holes read as zeros. It returns
// (0, io.EOF) at the end of the entry.
func (tr *Reader) Read(p []byte) (int, error) {
	if tr.err != nil {
		return 0, tr.err
	}
	at := tr.pos
	var n int
	var err error
	if tr.sparse {
		n, err = tr.readSparse(p)
	} else {
		n, err = tr.readData(p)
	}
	if err != nil && err != io.EOF {
		tr.err = &Error{Entry: tr.name, Offset: at + int64(n), Err: err}
		return n, tr.err
	}
	return n, err
}

// Next advances to the next entry and returns its header; io.EOF at the end of the
// archive. The data of the previous entry, read or not, is skipped.
func (tr *Reader) Next() (*tar.Header, error) {
	if tr.err != nil {
		return nil, tr.err
	}
	hdr, err := tr.next()
	if err != nil {
		if err != io.EOF {
			var e *Error
			if !errors.As(err, &e) {
				err = &Error{Entry: tr.name, Offset: tr.hdrOff, Err: err}
			}
		}
		tr.err = err
		return nil, err
	}
	return hdr, nil
}

func (tr *Reader) next() (*tar.Header, error) {
	var pax map[string]string
	var longName, longLink string
	var format tar.Format
	prev := tr.name
	for first := true; ; first = false {
		// Skip the rest of the entry before (or of the extension header just read).
		if tr.remain > 0 {
			at := tr.pos
			if err := tr.discard(tr.remain); err != nil {
				return nil, &Error{Entry: prev, Offset: at, Err: err}
			}
			tr.remain = 0
		}
		if tr.pad > 0 {
			// A stream that ends in the padding ends there (archive/tar does the
			// same); a source that fails there (a truncated gzip stream says
			// io.ErrUnexpectedEOF) fails the archive, as in archive/tar.
			if err := tr.discard(tr.pad); err != nil {
				if tr.srcErr == io.EOF {
					return nil, io.EOF
				}
				return nil, &Error{Entry: prev, Offset: tr.pos, Err: err}
			}
			tr.pad = 0
		}
		tr.sparse, tr.holes = false, nil
		if first {
			tr.hdrOff = tr.pos
			tr.name = ""
		}
		blkOff := tr.pos
		hdr, raw, err := tr.readHeader()
		if err != nil {
			if err == io.EOF {
				return nil, err
			}
			return nil, &Error{Entry: tr.name, Offset: blkOff, Err: err}
		}
		if err := tr.handleRegular(hdr); err != nil {
			return nil, &Error{Entry: hdr.Name, Offset: blkOff, Err: err}
		}
		switch hdr.Typeflag {
		case tar.TypeXHeader, tar.TypeXGlobalHeader:
			format = tar.FormatPAX
			pax, err = tr.parsePAX()
			if err != nil {
				return nil, &Error{Entry: hdr.Name, Offset: blkOff, Err: err}
			}
			if hdr.Typeflag == tar.TypeXGlobalHeader {
				mergePAX(hdr, pax)
				tr.name = hdr.Name
				tr.dataOff = tr.pos
				return &tar.Header{Name: hdr.Name, Typeflag: hdr.Typeflag, Xattrs: hdr.Xattrs,
					PAXRecords: hdr.PAXRecords, Format: tar.FormatPAX}, nil
			}
			continue
		case tar.TypeGNULongName, tar.TypeGNULongLink:
			format = tar.FormatGNU
			b, err := tr.readSpecial()
			if err != nil {
				return nil, &Error{Entry: hdr.Name, Offset: blkOff, Err: err}
			}
			if i := bytes.IndexByte(b, 0); i >= 0 {
				b = b[:i]
			}
			if hdr.Typeflag == tar.TypeGNULongName {
				longName = string(b)
				tr.name = longName
			} else {
				longLink = string(b)
			}
			continue
		}
		if err := mergePAX(hdr, pax); err != nil {
			return nil, &Error{Entry: hdr.Name, Offset: blkOff, Err: err}
		}
		if longName != "" {
			hdr.Name = longName
		}
		if longLink != "" {
			hdr.Linkname = longLink
		}
		if hdr.Typeflag == tar.TypeRegA {
			if strings.HasSuffix(hdr.Name, "/") {
				hdr.Typeflag = tar.TypeDir
			} else {
				hdr.Typeflag = tar.TypeReg
			}
		}
		tr.name = hdr.Name
		// PAX records may have changed the size.
		if err := tr.handleRegular(hdr); err != nil {
			return nil, &Error{Entry: hdr.Name, Offset: blkOff, Err: err}
		}
		if err := tr.handleSparse(hdr, raw); err != nil {
			return nil, &Error{Entry: hdr.Name, Offset: blkOff, Err: err}
		}
		tr.dataOff = tr.pos
		if format != 0 {
			hdr.Format = format
		}
		return hdr, nil
	}
}

func isHeaderOnlyType(flag byte) bool {
	switch flag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// handleRegular sets up the data section of hdr.
func (tr *Reader) handleRegular(hdr *tar.Header) error {
	nb := hdr.Size
	if isHeaderOnlyType(hdr.Typeflag) {
		nb = 0
	}
	if nb < 0 {
		return tar.ErrHeader
	}
	tr.remain = nb
	tr.pad = blockPadding(nb)
	return nil
}

// readSpecial reads the data of an extension header, at most 1 MiB.
func (tr *Reader) readSpecial() ([]byte, error) {
	if tr.remain > maxSpecialFileSize {
		// archive/tar reads 1 MiB + 1 byte before it gives up; so does this.
		b := tr.special[:0]
		if cap(b) < maxSpecialFileSize+1 {
			b = make([]byte, maxSpecialFileSize+1)
		}
		b = b[:maxSpecialFileSize+1]
		n, err := tr.readDataFull(b)
		if n > maxSpecialFileSize {
			return nil, tar.ErrFieldTooLong
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := int(tr.remain)
	if cap(tr.special) < n {
		tr.special = make([]byte, n, max(n, 4096))
	}
	b := tr.special[:n]
	m, err := tr.readDataFull(b)
	if err == io.EOF {
		err = nil
	}
	return b[:m], err
}

const (
	paxGNUSparse          = "GNU.sparse."
	paxGNUSparseNumBlocks = "GNU.sparse.numblocks"
	paxGNUSparseOffset    = "GNU.sparse.offset"
	paxGNUSparseNumBytes  = "GNU.sparse.numbytes"
	paxGNUSparseMap       = "GNU.sparse.map"
	paxGNUSparseName      = "GNU.sparse.name"
	paxGNUSparseMajor     = "GNU.sparse.major"
	paxGNUSparseMinor     = "GNU.sparse.minor"
	paxGNUSparseSize      = "GNU.sparse.size"
	paxGNUSparseRealSize  = "GNU.sparse.realsize"
	paxSchilyXattr        = "SCHILY.xattr."
)

// parsePAX reads the records of a PAX extended header. The body becomes one string;
// keys and values are slices of it.
func (tr *Reader) parsePAX() (map[string]string, error) {
	b, err := tr.readSpecial()
	if err != nil {
		return nil, err
	}
	s := string(b)
	var sparseMap []string
	recs := make(map[string]string, 8)
	for len(s) > 0 {
		k, v, rest, ok := parsePAXRecord(s)
		if !ok {
			return nil, tar.ErrHeader
		}
		s = rest
		switch k {
		case paxGNUSparseOffset, paxGNUSparseNumBytes:
			// GNU sparse 0.0 repeats these; they become one 0.1 map.
			if (len(sparseMap)%2 == 0 && k != paxGNUSparseOffset) ||
				(len(sparseMap)%2 == 1 && k != paxGNUSparseNumBytes) ||
				strings.Contains(v, ",") {
				return nil, tar.ErrHeader
			}
			sparseMap = append(sparseMap, v)
		default:
			recs[k] = v
		}
	}
	if len(sparseMap) > 0 {
		recs[paxGNUSparseMap] = strings.Join(sparseMap, ",")
	}
	return recs, nil
}

// parsePAXRecord parses "<len> <key>=<value>\n" at the start of s.
func parsePAXRecord(s string) (k, v, rest string, ok bool) {
	sp := strings.IndexByte(s, ' ')
	if sp < 0 {
		return "", "", s, false
	}
	n, err := strconv.ParseInt(s[:sp], 10, 0)
	if err != nil || n < 5 || n > int64(len(s)) {
		return "", "", s, false
	}
	body := n - int64(sp+1) // length of "<key>=<value>\n"
	if body <= 0 {
		return "", "", s, false
	}
	recEnd := int64(sp+1) + body
	if s[recEnd-1] != '\n' {
		return "", "", s, false
	}
	rec := s[sp+1 : recEnd-1]
	eq := strings.IndexByte(rec, '=')
	if eq < 0 {
		return "", "", s, false
	}
	k, v = rec[:eq], rec[eq+1:]
	if k == "" || strings.Contains(k, "=") {
		return "", "", s, false
	}
	switch k {
	case "path", "linkpath", "uname", "gname":
		if strings.IndexByte(v, 0) >= 0 {
			return "", "", s, false
		}
	default:
		if strings.IndexByte(k, 0) >= 0 {
			return "", "", s, false
		}
	}
	return k, v, s[recEnd:], true
}

// mergePAX applies the PAX records to hdr's fields; an unparsable value is
// tar.ErrHeader.
func mergePAX(hdr *tar.Header, recs map[string]string) error {
	var err error
	for k, v := range recs {
		if v == "" {
			continue // the header's own value stands
		}
		var id int64
		switch k {
		case "path":
			hdr.Name = v
		case "linkpath":
			hdr.Linkname = v
		case "uname":
			hdr.Uname = v
		case "gname":
			hdr.Gname = v
		case "uid":
			id, err = strconv.ParseInt(v, 10, 64)
			hdr.Uid = int(id)
		case "gid":
			id, err = strconv.ParseInt(v, 10, 64)
			hdr.Gid = int(id)
		case "atime":
			hdr.AccessTime, err = ParsePAXTime(v)
		case "mtime":
			hdr.ModTime, err = ParsePAXTime(v)
		case "ctime":
			hdr.ChangeTime, err = ParsePAXTime(v)
		case "size":
			hdr.Size, err = strconv.ParseInt(v, 10, 64)
		default:
			if strings.HasPrefix(k, paxSchilyXattr) {
				if hdr.Xattrs == nil {
					hdr.Xattrs = map[string]string{}
				}
				hdr.Xattrs[k[len(paxSchilyXattr):]] = v
			}
		}
		if err != nil {
			return tar.ErrHeader
		}
	}
	hdr.PAXRecords = recs
	return nil
}

// ParsePAXTime parses a PAX time, "<seconds>[.<fraction>]", as archive/tar does:
// digits past nanoseconds are dropped, a minus sign applies to the fraction too.
func ParsePAXTime(s string) (time.Time, error) {
	ss, sn, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(ss, 10, 64)
	if err != nil {
		return time.Time{}, tar.ErrHeader
	}
	if sn == "" {
		return time.Unix(secs, 0), nil
	}
	var nsecs int64
	for i := 0; i < len(sn); i++ {
		c := sn[i]
		if c < '0' || c > '9' {
			return time.Time{}, tar.ErrHeader
		}
		if i < 9 {
			nsecs = nsecs*10 + int64(c-'0')
		}
	}
	for i := len(sn); i < 9; i++ {
		nsecs *= 10
	}
	if ss != "" && ss[0] == '-' {
		return time.Unix(secs, -nsecs), nil
	}
	return time.Unix(secs, nsecs), nil
}

// unexpected turns io.EOF into io.ErrUnexpectedEOF: the stream ended inside
// something that must be whole.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Plain returns a reader of the current entry's data, as tr's Read, whose errors
// are their causes alone (see Cause): for callers whose own errors name the
// entry and offset.
func (tr *Reader) Plain() io.Reader { return plainReader{tr} }

type plainReader struct{ tr *Reader }

func (p plainReader) Read(b []byte) (int, error) {
	n, err := p.tr.Read(b)
	return n, Cause(err)
}
