package tarstream

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tarBlock is the unit of the stream the Writer writes: headers and padded data.
const tarBlock = 512

// writeBufferSize is the Writer's buffer: headers and small files gather in it and
// reach the output in few large writes.
const writeBufferSize = 1 << 20

// headerRoom is the free space the buffer keeps for the next header: the buffer is
// written out before it has less, so a header (security descriptors and other PAX
// records are a few KiB) is appended without growing it. A larger header grows the
// buffer for once; the next flush goes back to writeBufferSize.
const headerRoom = 64 << 10

// KernelCopyMin is the smallest data section WriteFile hands to the kernel
// (copy_file_range or sendfile); smaller ones are read into the Writer's buffer,
// where one read and a share of one large write cost less than flushing the buffer
// and a copy call of their own.
const KernelCopyMin = 256 << 10

var zeroPad [2 * tarBlock]byte

// Writer writes a tar stream whose headers are archive/tar Header values, byte for
// byte as archive/tar's Writer writes them (a differential fuzz target holds it to
// that). It differs where layers gain from it:
//
//   - the headers of the shapes layers write (PAX with Windows records, PAX times)
//     are encoded directly into its buffer, without archive/tar's per-header maps
//     and strings; any other header goes through archive/tar's encoder, so the
//     bytes are always archive/tar's;
//   - it keeps one large buffer, and a small file's data can be read straight
//     into it (WriteInPlace), without a second copy;
//   - when the output is an *os.File, WriteFile copies a large file's data with
//     copy_file_range (output a regular file) or sendfile (a pipe or socket), so
//     the data does not pass through user space; where the kernel cannot, it
//     falls back to read and write.
//
// A Writer is not safe for concurrent use. Close writes the end-of-archive blocks
// and flushes; it does not close or sync the output.
type Writer struct {
	w   io.Writer
	out *os.File // w as a file, when the kernel may write into it directly
	// kernel is the copy the output allows: copyRange, copySend or copyNone
	// (decided at the first WriteFile, changed to copyNone when the kernel refuses).
	kernel copyMode
	probed bool

	// bg is set when the output is a regular file (and not opened for
	// appending): full buffers are then written at their offsets from a
	// goroutine while the next one fills, and kernel copies name their output
	// offset (see background).
	bg       *background
	bgProbed bool

	buf     []byte
	written int64 // bytes that reached w (or, with bg, were handed to it)
	remain  int64 // data bytes the current entry still expects
	pad     int64 // zero bytes after the current entry's data
	err     error // sticky: a failed write leaves the stream unusable

	// Reused by the header encoder.
	keys []string
	recs []byte
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	tw := &Writer{w: w, buf: make([]byte, 0, writeBufferSize)}
	if f, ok := w.(*os.File); ok {
		tw.out = f
	}
	return tw
}

// Offset returns the bytes of the stream written so far, buffered ones included.
func (tw *Writer) Offset() int64 { return tw.written + int64(len(tw.buf)) }

// WriteHeader finishes the current entry (its data must be complete) and writes
// hdr. Errors are archive/tar's for the same header.
func (tw *Writer) WriteHeader(hdr *tar.Header) error {
	if err := tw.finishEntry(); err != nil {
		return err
	}
	// Data written since the last header may have left less than headerRoom.
	if err := tw.maybeFlush(); err != nil {
		return err
	}
	size, ok, err := tw.appendHeader(hdr)
	if !ok {
		size, err = tw.appendArchiveTarHeader(hdr)
	}
	if err != nil {
		return err
	}
	if isHeaderOnly(hdr.Typeflag) {
		size = 0
	}
	tw.remain, tw.pad = size, -size&(tarBlock-1)
	return tw.maybeFlush()
}

func isHeaderOnly(flag byte) bool {
	switch flag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// finishEntry writes the current entry's padding.
func (tw *Writer) finishEntry() error {
	if tw.err != nil {
		return tw.err
	}
	if tw.remain > 0 {
		return fmt.Errorf("archive/tar: missed writing %d bytes", tw.remain)
	}
	tw.buf = append(tw.buf, zeroPad[:tw.pad]...)
	tw.pad = 0
	return nil
}

// Write writes data of the current entry.
func (tw *Writer) Write(p []byte) (int, error) {
	if tw.err != nil {
		return 0, tw.err
	}
	var tooLong bool
	if int64(len(p)) > tw.remain {
		p, tooLong = p[:tw.remain], true
	}
	n := len(p)
	if len(tw.buf)+n > cap(tw.buf) && len(tw.buf) > 0 {
		// Fill the buffer, write it, and write what is left of a large p directly.
		k := cap(tw.buf) - len(tw.buf)
		tw.buf = append(tw.buf, p[:k]...)
		p = p[k:]
		if err := tw.flush(); err != nil {
			return n - len(p), err
		}
	}
	if len(p) >= cap(tw.buf) {
		if err := tw.writeOut(p); err != nil {
			return 0, err
		}
	} else {
		tw.buf = append(tw.buf, p...)
	}
	tw.remain -= int64(n)
	if tooLong {
		return n, tar.ErrWriteTooLong
	}
	return n, nil
}

// WriteInPlace writes n bytes of data of the current entry that fill puts into the
// slice it is given, a part of the Writer's buffer: a small file is read once,
// straight into the buffer. n must be at most the buffer size (1 MiB); an error
// from fill is returned and nothing is written.
func (tw *Writer) WriteInPlace(n int, fill func(p []byte) error) error {
	if tw.err != nil {
		return tw.err
	}
	if int64(n) > tw.remain {
		return tar.ErrWriteTooLong
	}
	if n > writeBufferSize {
		return fmt.Errorf("tarstream: WriteInPlace of %d bytes, more than the %d bytes buffer", n, writeBufferSize)
	}
	if len(tw.buf)+n > cap(tw.buf) {
		if err := tw.flush(); err != nil {
			return err
		}
	}
	start := len(tw.buf)
	p := tw.buf[start : start+n]
	if err := fill(p); err != nil {
		return err
	}
	tw.buf = tw.buf[:start+n]
	tw.remain -= int64(n)
	return nil
}

// WriteFile writes n bytes of f from offset off as data of the current entry: by
// the kernel when the output is a file that allows it (see Writer) and n is at
// least KernelCopyMin, through the buffer otherwise. f's own offset does not move.
// It returns the bytes written; fewer than n only with an error (io.ErrUnexpectedEOF
// when f ends first).
func (tw *Writer) WriteFile(f *os.File, off, n int64) (int64, error) {
	if tw.err != nil {
		return 0, tw.err
	}
	if n > tw.remain {
		return 0, tar.ErrWriteTooLong
	}
	var done int64
	if n >= KernelCopyMin && tw.out != nil {
		if !tw.probed {
			tw.kernel, tw.probed = probeOutput(tw.out), true
		}
		if tw.kernel != copyNone {
			if err := tw.flush(); err != nil {
				return 0, err
			}
			var outOff *int64
			if tw.bg != nil {
				// After the buffer just handed over, which may still be
				// being written.
				o := tw.bg.base + tw.written
				outOff = &o
			}
			k, mode, err := kernelCopy(tw.kernel, tw.out, f, off, n, outOff)
			tw.kernel = mode
			done += k
			tw.written += k
			tw.remain -= k
			if err != nil {
				tw.err = err
				return done, err
			}
		}
	}
	for done < n {
		chunk := min(n-done, int64(writeBufferSize))
		if int(chunk) > cap(tw.buf)-len(tw.buf) {
			if err := tw.flush(); err != nil {
				return done, err
			}
		}
		start := len(tw.buf)
		p := tw.buf[start : start+int(chunk)]
		k, err := f.ReadAt(p, off+done)
		tw.buf = tw.buf[:start+k]
		tw.remain -= int64(k)
		done += int64(k)
		if err == io.EOF && done < n {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && done < n {
			return done, err
		}
	}
	return done, tw.maybeFlush()
}

// Flush writes the buffered bytes to the output.
func (tw *Writer) Flush() error {
	if tw.err != nil {
		return tw.err
	}
	if err := tw.flush(); err != nil {
		return err
	}
	return tw.settle()
}

// settle waits for the background write, if any, and leaves the output's
// position at the end of what was written, as sequential writes would have.
func (tw *Writer) settle() error {
	if tw.bg == nil {
		return nil
	}
	if err := tw.bg.wait(); err != nil {
		tw.err = err
		return err
	}
	if _, err := tw.out.Seek(tw.bg.base+tw.written, io.SeekStart); err != nil {
		tw.err = err
		return err
	}
	return nil
}

// Close finishes the current entry, writes the two zero blocks that end a tar and
// flushes. It does not close the output.
func (tw *Writer) Close() error {
	if err := tw.finishEntry(); err != nil {
		return err
	}
	tw.buf = append(tw.buf, zeroPad[:]...)
	if err := tw.flush(); err != nil {
		return err
	}
	if err := tw.settle(); err != nil {
		return err
	}
	tw.err = fmt.Errorf("tarstream: %w", tar.ErrWriteAfterClose)
	return nil
}

func (tw *Writer) maybeFlush() error {
	if len(tw.buf) >= writeBufferSize-headerRoom {
		return tw.flush()
	}
	return nil
}

// flush writes the buffer out. A buffer that a large header grew is dropped, so
// the Writer's memory stays writeBufferSize whatever the input.
func (tw *Writer) flush() error {
	if len(tw.buf) == 0 {
		return nil
	}
	if !tw.bgProbed {
		tw.bgProbed = true
		if tw.out != nil {
			if base, ok := positionalOutput(tw.out); ok {
				tw.bg = &background{out: tw.out, base: base, done: make(chan error, 1)}
			}
		}
	}
	if tw.bg != nil {
		free, err := tw.bg.submit(tw.buf, tw.bg.base+tw.written)
		if err != nil {
			tw.err = err
			return err
		}
		tw.written += int64(len(tw.buf))
		if free == nil || cap(free) > writeBufferSize {
			free = make([]byte, 0, writeBufferSize)
		}
		tw.buf = free[:0]
		return nil
	}
	err := tw.writeOut(tw.buf)
	if cap(tw.buf) > writeBufferSize {
		tw.buf = make([]byte, 0, writeBufferSize)
	} else {
		tw.buf = tw.buf[:0]
	}
	return err
}

// background writes the Writer's full buffers into a regular file at their
// offsets, one at a time, each from a goroutine of its own, so that the Writer
// fills its next buffer (headers, small files read in place) while the kernel
// copies the last one into the page cache. In a layer export the two take about
// as long as each other. A Writer abandoned with a write in flight leaks
// nothing: the goroutine ends with its write.
type background struct {
	out      *os.File
	base     int64 // the output's position when the stream began
	done     chan error
	inFlight []byte // the buffer being written, nil when none
}

// submit waits for the write in flight, starts writing p at off, and returns
// the buffer the finished write used (nil if none), free for reuse.
func (b *background) submit(p []byte, off int64) ([]byte, error) {
	free := b.inFlight
	if err := b.wait(); err != nil {
		return nil, err
	}
	b.inFlight = p
	go func() {
		_, err := b.out.WriteAt(p, off)
		b.done <- err
	}()
	return free, nil
}

// wait waits for the write in flight, if any, and returns its error.
func (b *background) wait() error {
	if b.inFlight == nil {
		return nil
	}
	b.inFlight = nil
	return <-b.done
}

func (tw *Writer) writeOut(p []byte) error {
	if tw.bg != nil {
		// A caller's large slice, written now, after the buffer in flight.
		if err := tw.bg.wait(); err != nil {
			tw.err = err
			return err
		}
		n, err := tw.out.WriteAt(p, tw.bg.base+tw.written)
		tw.written += int64(n)
		if err != nil {
			tw.err = err
		}
		return err
	}
	n, err := tw.w.Write(p)
	tw.written += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		tw.err = err
	}
	return err
}

// appendArchiveTarHeader encodes hdr with archive/tar, for the shapes appendHeader
// does not take, and returns the entry's data size.
func (tw *Writer) appendArchiveTarHeader(hdr *tar.Header) (int64, error) {
	var b bytes.Buffer
	if err := tar.NewWriter(&b).WriteHeader(hdr); err != nil {
		return 0, err
	}
	tw.buf = append(tw.buf, b.Bytes()...)
	return hdr.Size, nil
}

// PAX keys archive/tar derives from header fields; records with these keys in
// PAXRecords are ignored unless they equal the derived value.
func basicPAXKey(k string) bool {
	switch k {
	case "path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime":
		return true
	}
	return false
}

func fitsOctal(n int, x int64) bool {
	octBits := uint(n-1) * 3
	return x >= 0 && (n >= 22 || x < 1<<octBits)
}

func asciiString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// appendHeader encodes the headers that need PAX, the form layers write, straight
// into the buffer, exactly as archive/tar's writePAXHeader does. It reports !ok,
// having appended nothing, for any other header.
func (tw *Writer) appendHeader(h *tar.Header) (size int64, ok bool, err error) {
	if h.Format != tar.FormatPAX || len(h.Xattrs) > 0 || h.Uid != 0 || h.Gid != 0 ||
		h.Uname != "" || h.Gname != "" || h.Devmajor != 0 || h.Devminor != 0 ||
		!fitsOctal(8, h.Mode) || h.Size < 0 || !fitsOctal(12, h.Size) ||
		strings.IndexByte(h.Name, 0) >= 0 || strings.IndexByte(h.Linkname, 0) >= 0 {
		return 0, false, nil
	}
	switch h.Typeflag {
	case tar.TypeReg:
		if strings.HasSuffix(h.Name, "/") {
			return 0, false, nil
		}
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		if h.Size != 0 {
			return 0, false, nil
		}
	default:
		return 0, false, nil
	}
	for k := range h.PAXRecords {
		if k == "" || strings.IndexByte(k, '=') >= 0 || strings.IndexByte(k, 0) >= 0 ||
			basicPAXKey(k) || strings.HasPrefix(k, "GNU.sparse.") {
			return 0, false, nil
		}
	}
	mtimeRec := !h.ModTime.IsZero() && (h.ModTime.Nanosecond() != 0 || !fitsOctal(12, h.ModTime.Unix()))
	if len(h.PAXRecords) == 0 && !mtimeRec && h.AccessTime.IsZero() && h.ChangeTime.IsZero() {
		return 0, false, nil // USTAR: archive/tar prefers it
	}

	// The records, sorted by key.
	nameRec := len(h.Name) > 100 || !asciiString(h.Name)
	linkRec := len(h.Linkname) > 100 || !asciiString(h.Linkname)
	keys := tw.keys[:0]
	for k := range h.PAXRecords {
		keys = append(keys, k)
	}
	if !h.AccessTime.IsZero() {
		keys = append(keys, "atime")
	}
	if !h.ChangeTime.IsZero() {
		keys = append(keys, "ctime")
	}
	if linkRec {
		keys = append(keys, "linkpath")
	}
	if mtimeRec {
		keys = append(keys, "mtime")
	}
	if nameRec {
		keys = append(keys, "path")
	}
	slices.Sort(keys)
	tw.keys = keys
	recs := tw.recs[:0]
	for _, k := range keys {
		switch k {
		case "atime":
			recs = appendPAXTimeRecord(recs, k, h.AccessTime)
		case "ctime":
			recs = appendPAXTimeRecord(recs, k, h.ChangeTime)
		case "mtime":
			recs = appendPAXTimeRecord(recs, k, h.ModTime)
		case "path":
			recs = appendPAXRecord(recs, k, h.Name)
		case "linkpath":
			recs = appendPAXRecord(recs, k, h.Linkname)
		default:
			recs = appendPAXRecord(recs, k, h.PAXRecords[k])
		}
	}
	tw.recs = recs
	if len(recs) > 1<<20 {
		return 0, true, tar.ErrFieldTooLong
	}

	// The extended header: a file named <dir>/PaxHeaders.0/<base>.
	dir, file := path.Split(h.Name)
	xname := path.Join(dir, "PaxHeaders.0", file)
	xname = toASCIIString(xname)
	if len(xname) > 100 {
		xname = xname[:100]
	}
	xname = strings.TrimRight(xname, "/")
	blk := tw.newBlock()
	blk[156] = tar.TypeXHeader
	putString(blk[0:100], xname)
	putOctal(blk[100:108], 0)
	putOctal(blk[108:116], 0)
	putOctal(blk[116:124], 0)
	putOctal(blk[124:136], int64(len(recs)))
	putOctal(blk[136:148], 0)
	finishBlock(blk)
	tw.buf = append(tw.buf, recs...)
	tw.buf = append(tw.buf, zeroPad[:-len(recs)&(tarBlock-1)]...)

	// The main header.
	mt := h.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	blk = tw.newBlock()
	blk[156] = h.Typeflag
	putString(blk[0:100], toASCIIString(h.Name))
	putString(blk[157:257], toASCIIString(h.Linkname))
	putOctal(blk[100:108], h.Mode)
	putOctal(blk[108:116], 0)
	putOctal(blk[116:124], 0)
	putOctal(blk[124:136], h.Size)
	putOctal(blk[136:148], mt.Unix())
	putOctal(blk[329:337], 0)
	putOctal(blk[337:345], 0)
	finishBlock(blk)
	return h.Size, true, nil
}

// newBlock appends a zero block to the buffer and returns it.
func (tw *Writer) newBlock() []byte {
	if len(tw.buf)+tarBlock > cap(tw.buf) {
		// A header larger than the buffer's free space: grow rather than flush
		// in the middle of one (the PAX data is at most 1 MiB).
		nb := make([]byte, len(tw.buf), 2*cap(tw.buf)+tarBlock)
		copy(nb, tw.buf)
		tw.buf = nb
	}
	start := len(tw.buf)
	tw.buf = append(tw.buf, zeroPad[:tarBlock]...)
	return tw.buf[start : start+tarBlock]
}

// finishBlock writes the ustar magic and version and the checksum.
func finishBlock(b []byte) {
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	sum := int64(8 * ' ')
	for i, c := range b {
		if i < 148 || i >= 156 {
			sum += int64(c)
		}
	}
	putOctal(b[148:155], sum)
	b[155] = ' '
}

// putString is archive/tar's formatString: s truncated to the field, NUL
// terminated when shorter, a trailing slash of a truncated name dropped.
func putString(b []byte, s string) {
	copy(b, s)
	if len(s) < len(b) {
		b[len(s)] = 0
	}
	if len(s) > len(b) && b[len(b)-1] == '/' {
		n := len(strings.TrimRight(s[:len(b)-1], "/"))
		b[n] = 0
	}
}

// putOctal is archive/tar's formatOctal: zero-padded octal leaving room for a
// NUL; 0 where the value does not fit (a PAX record holds it).
func putOctal(b []byte, x int64) {
	if !fitsOctal(len(b), x) {
		x = 0
	}
	var d [24]byte
	s := strconv.AppendInt(d[:0], x, 8)
	i := 0
	for ; i < len(b)-len(s)-1; i++ {
		b[i] = '0'
	}
	copy(b[i:], s)
	if i+len(s) < len(b) {
		b[i+len(s)] = 0
	}
}

func toASCIIString(s string) string {
	if asciiString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for _, c := range s {
		if c < 0x80 && c != 0 {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

// appendPAXRecord appends "<len> <k>=<v>\n", len counting itself.
func appendPAXRecord(b []byte, k, v string) []byte {
	n := len(k) + len(v) + 3
	size := n + decimalDigits(n)
	if decimalDigits(size) != decimalDigits(n) {
		size = n + decimalDigits(size)
	}
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, ' ')
	b = append(b, k...)
	b = append(b, '=')
	b = append(b, v...)
	return append(b, '\n')
}

func appendPAXTimeRecord(b []byte, k string, t time.Time) []byte {
	var d [32]byte
	return appendPAXRecord(b, k, string(AppendPAXTime(d[:0], t)))
}

func decimalDigits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// AppendPAXTime appends t as a PAX time record value, as archive/tar formats it:
// seconds, and a fraction without trailing zeros when there is one.
func AppendPAXTime(b []byte, t time.Time) []byte {
	secs, nsecs := t.Unix(), t.Nanosecond()
	if nsecs == 0 {
		return strconv.AppendInt(b, secs, 10)
	}
	if secs < 0 {
		b = append(b, '-')
		secs = -(secs + 1)
		nsecs = -(nsecs - 1e9)
	}
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, '.')
	var frac [9]byte
	for i := 8; i >= 0; i-- {
		frac[i] = byte('0' + nsecs%10)
		nsecs /= 10
	}
	end := 9
	for end > 0 && frac[end-1] == '0' {
		end--
	}
	return append(b, frac[:end]...)
}
