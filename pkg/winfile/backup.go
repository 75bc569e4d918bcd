package winfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// StreamID is the type of one stream in a Win32 backup stream
// (WIN32_STREAM_ID.dwStreamId).
type StreamID uint32

// Stream IDs defined by [MS-BKUP]. Other non-zero values are passed through
// by [BackupReader] and [BackupWriter] unchanged, since the format may grow;
// what their payloads mean is up to the caller.
const (
	StreamData               StreamID = 1  // BACKUP_DATA: the unnamed $DATA stream
	StreamEAData             StreamID = 2  // BACKUP_EA_DATA: FILE_FULL_EA_INFORMATION chain
	StreamSecurityData       StreamID = 3  // BACKUP_SECURITY_DATA: self-relative security descriptor
	StreamAlternateData      StreamID = 4  // BACKUP_ALTERNATE_DATA: a named $DATA stream
	StreamLink               StreamID = 5  // BACKUP_LINK: hard-link information, opaque
	StreamPropertyData       StreamID = 6  // BACKUP_PROPERTY_DATA: legacy property sets, opaque
	StreamObjectID           StreamID = 7  // BACKUP_OBJECT_ID: 16-byte object ID plus 48 bytes
	StreamReparseData        StreamID = 8  // BACKUP_REPARSE_DATA: complete reparse buffer
	StreamSparseBlock        StreamID = 9  // BACKUP_SPARSE_BLOCK: one range of a sparse stream
	StreamTxfsData           StreamID = 10 // BACKUP_TXFS_DATA: transactional NTFS data, opaque
	StreamGhostedFileExtents StreamID = 11 // GHOSTED_FILE_EXTENTS
)

var streamNames = [...]string{
	StreamData:               "DATA",
	StreamEAData:             "EA_DATA",
	StreamSecurityData:       "SECURITY_DATA",
	StreamAlternateData:      "ALTERNATE_DATA",
	StreamLink:               "LINK",
	StreamPropertyData:       "PROPERTY_DATA",
	StreamObjectID:           "OBJECT_ID",
	StreamReparseData:        "REPARSE_DATA",
	StreamSparseBlock:        "SPARSE_BLOCK",
	StreamTxfsData:           "TXFS_DATA",
	StreamGhostedFileExtents: "GHOSTED_FILE_EXTENTS",
}

// String returns the [MS-BKUP] name without its BACKUP_ prefix, such as
// "DATA" or "SPARSE_BLOCK", or "StreamID(n)" for other values.
func (id StreamID) String() string {
	if int(id) < len(streamNames) && streamNames[id] != "" {
		return streamNames[id]
	}
	return "StreamID(" + strconv.FormatUint(uint64(id), 10) + ")"
}

// Stream attribute bits (WIN32_STREAM_ID.dwStreamAttributes).
const (
	StreamAttrNormal                     = 0x00
	StreamAttrModifiedWhenRead           = 0x01
	StreamAttrContainsSecurity           = 0x02
	StreamAttrContainsProperties         = 0x04
	StreamAttrSparse                     = 0x08
	StreamAttrContainsGhostedFileExtents = 0x10
)

const (
	// BackupHeaderSize is the size of the fixed part of a stream header on
	// the wire. (The C sizeof(WIN32_STREAM_ID) is 24 because of trailing
	// alignment; that value is never the header length.)
	BackupHeaderSize = 20

	// MaxStreamSize is the largest Size field accepted on the wire, and so
	// the largest payload (for sparse blocks, payload plus the 8-byte
	// offset). Larger values are rejected as corrupt.
	MaxStreamSize = 1 << 62

	// MaxStreamNameSize is the largest stream name accepted, in bytes of
	// UTF-16. NTFS names are far shorter; the bound keeps a corrupt header
	// from forcing a large allocation.
	MaxStreamNameSize = 64 << 10

	sparseOffsetSize = 8
)

// StreamHeader describes one stream of a backup stream. It is the decoded
// form of WIN32_STREAM_ID.
type StreamHeader struct {
	ID         StreamID
	Attributes uint32 // StreamAttr* bits
	// Size is the number of payload bytes that follow the header. For
	// StreamSparseBlock it excludes the 8-byte range offset, which is kept in
	// Offset; the wire Size field includes it.
	Size int64
	// Name is the stream name converted from UTF-16LE, such as
	// ":ads.txt:$DATA". StreamAlternateData requires one; other streams
	// normally have none, but a name present on the wire is kept.
	Name string
	// Offset is the position of this range in the logical stream, for
	// StreamSparseBlock only. A sparse block without data marks the logical
	// size. It is ignored for other streams.
	Offset int64
}

// BackupReader reads the sequence of streams of one Win32 backup stream, the
// format produced by BackupRead. It is used like archive/tar's Reader: Next
// advances to the next stream and the BackupReader itself reads that stream's
// payload.
//
// Errors are sticky: after an error every call returns it again. Malformed
// input gives a *FormatError; errors from the underlying reader are returned
// wrapped, not as format errors. A BackupReader is not safe for concurrent
// use.
type BackupReader struct {
	r            io.Reader
	off          int64 // bytes consumed from r
	cur          StreamID
	curSize      int64
	payloadStart int64
	remain       int64 // payload bytes of the current stream not yet read
	err          error // sticky; io.EOF after the last stream
	hdr          [BackupHeaderSize]byte
	copyBuf      []byte // reused by WriteTo; grows to at most copyBufSize
}

// copyBufSize is the largest buffer WriteTo uses.
const copyBufSize = 32 << 10

var (
	_ io.Reader   = (*BackupReader)(nil)
	_ io.WriterTo = (*BackupReader)(nil)
	_ io.Writer   = (*BackupWriter)(nil)
)

// NewBackupReader returns a BackupReader reading from r. Offsets in errors
// are counted from the first byte read from r.
func NewBackupReader(r io.Reader) *BackupReader {
	return &BackupReader{r: r}
}

// Next skips whatever remains of the current stream's payload and reads the
// next stream header. It returns io.EOF when the input ends cleanly between
// streams. A header or payload cut short by the end of input gives a
// *FormatError wrapping io.ErrUnexpectedEOF.
//
// Next checks each header: a non-zero stream ID, Size at most MaxStreamSize,
// an even name size of at most MaxStreamNameSize, a name that is valid
// UTF-16 (no unpaired surrogates), a name on every StreamAlternateData, and
// for StreamSparseBlock a Size of at least 8 and a non-negative offset.
// Stream IDs above StreamGhostedFileExtents are returned as they are.
//
// The returned header belongs to the caller.
func (br *BackupReader) Next() (*StreamHeader, error) {
	if br.err != nil {
		return nil, br.err
	}
	if br.remain > 0 {
		n, err := io.CopyN(io.Discard, br.r, br.remain)
		br.off += n
		br.remain -= n
		if err != nil {
			br.err = br.payloadErr(err)
			return nil, br.err
		}
	}
	h, err := br.readHeader()
	if err != nil {
		br.err = err
		return nil, err
	}
	br.cur = h.ID
	br.curSize = h.Size
	br.payloadStart = br.off
	br.remain = h.Size
	return h, nil
}

func (br *BackupReader) readHeader() (*StreamHeader, error) {
	const what = "backup stream header"
	start := br.off
	n, err := io.ReadFull(br.r, br.hdr[:])
	br.off += int64(n)
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, br.readErr(what, start, BackupHeaderSize, err)
	}
	id := StreamID(binary.LittleEndian.Uint32(br.hdr[0:]))
	attrs := binary.LittleEndian.Uint32(br.hdr[4:])
	size := binary.LittleEndian.Uint64(br.hdr[8:])
	nameSize := binary.LittleEndian.Uint32(br.hdr[16:])
	switch {
	case id == 0:
		return nil, formatErr(what, start, "stream ID 0 (BACKUP_INVALID)")
	case size > MaxStreamSize:
		return nil, formatErr(what, start, "%s stream size %d exceeds %d", id, size, uint64(MaxStreamSize))
	case nameSize%2 != 0:
		return nil, formatErr(what, start, "odd stream name size %d", nameSize)
	case nameSize > MaxStreamNameSize:
		return nil, formatErr(what, start, "stream name size %d exceeds %d", nameSize, MaxStreamNameSize)
	}
	h := &StreamHeader{ID: id, Attributes: attrs, Size: int64(size)}
	if nameSize > 0 {
		nameStart := br.off
		raw, err := readBounded(br.r, int(nameSize))
		br.off += int64(len(raw))
		if err != nil {
			return nil, br.readErr("backup stream name", nameStart, int64(nameSize), err)
		}
		name, bad, err := decodeUTF16(raw)
		if err != nil {
			return nil, &FormatError{Structure: "backup stream name", Offset: nameStart + int64(bad), Reason: "invalid UTF-16", Err: err}
		}
		h.Name = name
	}
	if id == StreamAlternateData && h.Name == "" {
		return nil, formatErr(what, start, "ALTERNATE_DATA stream without a name")
	}
	if id == StreamSparseBlock {
		if h.Size < sparseOffsetSize {
			return nil, formatErr(what, start, "SPARSE_BLOCK size %d is smaller than its 8-byte offset", h.Size)
		}
		offStart := br.off
		var b [sparseOffsetSize]byte
		n, err := io.ReadFull(br.r, b[:])
		br.off += int64(n)
		if err != nil {
			return nil, br.readErr("sparse block offset", offStart, sparseOffsetSize, err)
		}
		h.Size -= sparseOffsetSize
		h.Offset = int64(binary.LittleEndian.Uint64(b[:]))
		if h.Offset < 0 || h.Offset > math.MaxInt64-h.Size {
			return nil, formatErr("sparse block offset", offStart, "range at %d of %d bytes is outside the stream", h.Offset, h.Size)
		}
	}
	return h, nil
}

// readErr converts a failed read of a structure of the given size starting at
// start into the error Next or Read returns.
func (br *BackupReader) readErr(what string, start, size int64, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &FormatError{
			Structure: what,
			Offset:    start,
			Reason:    fmt.Sprintf("truncated: %d of %d bytes present", br.off-start, size),
			Err:       io.ErrUnexpectedEOF,
		}
	}
	return fmt.Errorf("winfile: reading %s at offset %d: %w", what, start, err)
}

func (br *BackupReader) payloadErr(err error) error {
	return br.readErr(br.cur.String()+" stream payload", br.payloadStart, br.curSize, err)
}

// readBounded reads exactly n bytes, growing its buffer only as data arrives
// so that a size field alone cannot force a large allocation.
func readBounded(r io.Reader, n int) ([]byte, error) {
	const first = 512
	buf := make([]byte, 0, min(n, first))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), len(buf)))
		}
		end := min(cap(buf), n)
		m, err := io.ReadFull(r, buf[len(buf):end])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// Read reads the payload of the current stream. It returns io.EOF at the end
// of the payload, and before the first call to Next. Input that ends inside
// the payload gives a *FormatError wrapping io.ErrUnexpectedEOF.
func (br *BackupReader) Read(p []byte) (int, error) {
	if br.err != nil {
		return 0, br.err
	}
	if br.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > br.remain {
		p = p[:br.remain]
	}
	n, err := br.r.Read(p)
	br.off += int64(n)
	br.remain -= int64(n)
	switch {
	case err == io.EOF && br.remain == 0:
		err = nil
	case err != nil:
		br.err = br.payloadErr(err)
		err = br.err
	}
	return n, err
}

// WriteTo writes the rest of the current stream's payload to w, so that
// io.Copy(w, br) copies one payload through a buffer the BackupReader reuses
// for every stream instead of allocating one per call. It returns nil at the
// end of the payload. Errors from reading are those of [BackupReader.Read]
// and are sticky. An error from w is returned as it is; the bytes of the
// failed write count as read, as with io.Copy.
func (br *BackupReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for br.remain > 0 && br.err == nil {
		if want := int(min(br.remain, copyBufSize)); len(br.copyBuf) < want {
			br.copyBuf = make([]byte, max(want, min(2*len(br.copyBuf), copyBufSize)))
		}
		n, rerr := br.Read(br.copyBuf)
		if n > 0 {
			m, werr := w.Write(br.copyBuf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
	}
	if br.err != nil && br.err != io.EOF {
		return total, br.err
	}
	return total, nil
}

// BackupWriter writes a Win32 backup stream, the format consumed by
// BackupWrite. Call WriteHeader for each stream, then Write exactly its Size
// payload bytes, and Close at the end.
//
// The writer adds nothing between streams and writes no terminator. A failed
// write to the underlying writer is sticky. A BackupWriter is not safe for
// concurrent use.
type BackupWriter struct {
	w       io.Writer
	off     int64 // bytes written to w
	cur     StreamID
	curSize int64
	remain  int64 // payload bytes of the current stream still expected
	err     error // sticky write error
	closed  bool
	buf     []byte // header scratch space
}

// NewBackupWriter returns a BackupWriter writing to w.
func NewBackupWriter(w io.Writer) *BackupWriter {
	return &BackupWriter{w: w}
}

// WriteHeader writes the header of the next stream. It fails with
// ErrWriteTooShort if the previous stream's payload is incomplete, and with a
// *FormatError if h cannot be encoded: ID 0, Size negative or above
// MaxStreamSize (MaxStreamSize-8 for sparse blocks), a Name that is not valid
// UTF-8 or longer than MaxStreamNameSize bytes of UTF-16, a
// StreamAlternateData without a Name, or a sparse block range outside
// [0, math.MaxInt64].
func (bw *BackupWriter) WriteHeader(h *StreamHeader) error {
	if bw.closed {
		return ErrWriteAfterClose
	}
	if bw.err != nil {
		return bw.err
	}
	if bw.remain > 0 {
		return fmt.Errorf("%w: %s stream has %d of %d bytes", ErrWriteTooShort, bw.cur, bw.curSize-bw.remain, bw.curSize)
	}
	const what = "backup stream header"
	wireSize := h.Size
	switch {
	case h.ID == 0:
		return formatErr(what, bw.off, "stream ID 0 (BACKUP_INVALID)")
	case h.Size < 0 || h.Size > MaxStreamSize:
		return formatErr(what, bw.off, "%s stream size %d is outside [0, %d]", h.ID, h.Size, int64(MaxStreamSize))
	case h.ID == StreamAlternateData && h.Name == "":
		return formatErr(what, bw.off, "ALTERNATE_DATA stream without a name")
	case h.ID == StreamSparseBlock:
		if h.Size > MaxStreamSize-sparseOffsetSize {
			return formatErr(what, bw.off, "SPARSE_BLOCK size %d exceeds %d", h.Size, int64(MaxStreamSize-sparseOffsetSize))
		}
		if h.Offset < 0 || h.Offset > math.MaxInt64-h.Size {
			return formatErr(what, bw.off, "sparse range at %d of %d bytes is outside the stream", h.Offset, h.Size)
		}
		wireSize += sparseOffsetSize
	}
	nameSize, err := utf16Len(h.Name)
	if err != nil {
		return &FormatError{Structure: "backup stream name", Offset: bw.off + BackupHeaderSize, Reason: "cannot encode name", Err: err}
	}
	if nameSize > MaxStreamNameSize {
		return formatErr("backup stream name", bw.off+BackupHeaderSize, "name is %d bytes of UTF-16, limit %d", nameSize, MaxStreamNameSize)
	}
	b := bw.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, uint32(h.ID))
	b = binary.LittleEndian.AppendUint32(b, h.Attributes)
	b = binary.LittleEndian.AppendUint64(b, uint64(wireSize))
	b = binary.LittleEndian.AppendUint32(b, uint32(nameSize))
	b = appendUTF16(b, h.Name)
	if h.ID == StreamSparseBlock {
		b = binary.LittleEndian.AppendUint64(b, uint64(h.Offset))
	}
	bw.buf = b
	if err := bw.write(b); err != nil {
		return err
	}
	bw.cur = h.ID
	bw.curSize = h.Size
	bw.remain = h.Size
	return nil
}

func (bw *BackupWriter) write(p []byte) error {
	n, err := bw.w.Write(p)
	bw.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		bw.err = fmt.Errorf("winfile: writing backup stream at offset %d: %w", bw.off, err)
		return bw.err
	}
	return nil
}

// Write writes payload bytes of the current stream. Bytes beyond the Size
// declared by WriteHeader are not written and give ErrWriteTooLong.
func (bw *BackupWriter) Write(p []byte) (int, error) {
	if bw.closed {
		return 0, ErrWriteAfterClose
	}
	if bw.err != nil {
		return 0, bw.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var tooLong error
	if int64(len(p)) > bw.remain {
		tooLong = fmt.Errorf("%w: %s stream declared %d bytes", ErrWriteTooLong, bw.cur, bw.curSize)
		p = p[:bw.remain]
	}
	before := bw.off
	err := bw.write(p)
	n := int(bw.off - before)
	bw.remain -= int64(n)
	if err != nil {
		return n, err
	}
	return n, tooLong
}

// Close checks that the last stream's payload is complete. It does not close
// the underlying writer. Calling Close again returns nil.
func (bw *BackupWriter) Close() error {
	if bw.closed {
		return nil
	}
	bw.closed = true
	if bw.err != nil {
		return bw.err
	}
	if bw.remain > 0 {
		return fmt.Errorf("%w: %s stream has %d of %d bytes", ErrWriteTooShort, bw.cur, bw.curSize-bw.remain, bw.curSize)
	}
	return nil
}
