package winfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

// goldenStream is a backup stream written out field by field from the tables
// of [MS-BKUP] / reference section 3: SECURITY_DATA holding the null
// descriptor, EA_DATA with one EA, DATA "hello", then a sparse alternate data
// stream ":s:$DATA" with one allocated range and its end marker.
const goldenStream = `
03000000 | 02000000 | 1400000000000000 | 00000000
01000480 00000000 00000000 00000000 00000000

02000000 | 00000000 | 1000000000000000 | 00000000
00000000 00 04 0200 54455354 00 6869 00

01000000 | 00000000 | 0500000000000000 | 00000000
68656c6c6f

04000000 | 08000000 | 0000000000000000 | 10000000
3a00 7300 3a00 2400 4400 4100 5400 4100

09000000 | 08000000 | 0b00000000000000 | 00000000
1000000000000000 | 78797a

09000000 | 08000000 | 0800000000000000 | 00000000
2000000000000000
`

type stream struct {
	h    StreamHeader
	data []byte
}

var nullSD = []byte{1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func goldenStreams() []stream {
	return []stream{
		{StreamHeader{ID: StreamSecurityData, Attributes: StreamAttrContainsSecurity, Size: 20}, nullSD},
		{StreamHeader{ID: StreamEAData, Size: 16}, []byte("\x00\x00\x00\x00\x00\x04\x02\x00TEST\x00hi\x00")},
		{StreamHeader{ID: StreamData, Size: 5}, []byte("hello")},
		{StreamHeader{ID: StreamAlternateData, Attributes: StreamAttrSparse, Name: ":s:$DATA"}, nil},
		{StreamHeader{ID: StreamSparseBlock, Attributes: StreamAttrSparse, Size: 3, Offset: 0x10}, []byte("xyz")},
		{StreamHeader{ID: StreamSparseBlock, Attributes: StreamAttrSparse, Offset: 0x20}, nil},
	}
}

func writeStreams(t testing.TB, streams []stream) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := NewBackupWriter(&buf)
	for _, s := range streams {
		h := s.h
		if err := bw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader(%+v): %v", h, err)
		}
		if _, err := bw.Write(s.data); err != nil {
			t.Fatalf("Write(%s): %v", h.ID, err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// readStreams reads every stream, payloads included.
func readStreams(r io.Reader) ([]stream, error) {
	br := NewBackupReader(r)
	var out []stream
	for {
		h, err := br.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		data, err := io.ReadAll(br)
		out = append(out, stream{*h, data})
		if err != nil {
			return out, err
		}
	}
}

func equalStreams(a, b []stream) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].h != b[i].h || !bytes.Equal(a[i].data, b[i].data) {
			return false
		}
	}
	return true
}

func TestBackupGolden(t *testing.T) {
	want := unhex(t, goldenStream)
	got := writeStreams(t, goldenStreams())
	if !bytes.Equal(got, want) {
		t.Fatalf("written stream:\n%x\nwant\n%x", got, want)
	}
	streams, err := readStreams(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if !equalStreams(streams, goldenStreams()) {
		t.Errorf("read %+v\nwant %+v", streams, goldenStreams())
	}
}

// TestBackupReaderIOTest reads the golden stream through the readers of
// testing/iotest, which deliver short reads and data with io.EOF.
func TestBackupReaderIOTest(t *testing.T) {
	data := unhex(t, goldenStream)
	readers := map[string]func(io.Reader) io.Reader{
		"one byte":  iotest.OneByteReader,
		"half":      iotest.HalfReader,
		"data+EOF":  iotest.DataErrReader,
		"plain":     func(r io.Reader) io.Reader { return r },
		"one+data":  func(r io.Reader) io.Reader { return iotest.DataErrReader(iotest.OneByteReader(r)) },
		"half+data": func(r io.Reader) io.Reader { return iotest.DataErrReader(iotest.HalfReader(r)) },
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			streams, err := readStreams(wrap(bytes.NewReader(data)))
			if err != nil {
				t.Fatal(err)
			}
			if !equalStreams(streams, goldenStreams()) {
				t.Errorf("read %+v", streams)
			}
		})
	}
}

// TestSparseRepresentations covers the ways BackupRead describes the unnamed
// stream of a sparse file (reference section 3.5).
func TestSparseRepresentations(t *testing.T) {
	const sparse = StreamAttrSparse
	tests := []struct {
		name    string
		streams []stream
		wire    []byte
	}{
		{
			name:    "size 0, newer OS",
			streams: []stream{{StreamHeader{ID: StreamData, Attributes: sparse}, nil}},
			wire:    rawStream(1, sparse, 0, ""),
		},
		{
			name: "size 4096, no allocated range",
			streams: []stream{
				{StreamHeader{ID: StreamData, Attributes: sparse}, nil},
				{StreamHeader{ID: StreamSparseBlock, Attributes: sparse, Offset: 4096}, nil},
			},
			wire: cat(rawStream(1, sparse, 0, ""), rawStream(9, sparse, 8, "", le64(4096))),
		},
		{
			name:    "one allocated range",
			streams: []stream{{StreamHeader{ID: StreamData, Attributes: sparse, Size: 6}, []byte("abcdef")}},
			wire:    rawStream(1, sparse, 6, "", []byte("abcdef")),
		},
		{
			name: "several ranges",
			streams: []stream{
				{StreamHeader{ID: StreamData, Attributes: sparse}, nil},
				{StreamHeader{ID: StreamSparseBlock, Attributes: sparse, Size: 2, Offset: 0}, []byte("ab")},
				{StreamHeader{ID: StreamSparseBlock, Attributes: sparse, Size: 3, Offset: 65536}, []byte("cde")},
				{StreamHeader{ID: StreamSparseBlock, Attributes: sparse, Offset: 1 << 20}, nil},
			},
			wire: cat(
				rawStream(1, sparse, 0, ""),
				rawStream(9, sparse, 10, "", le64(0), []byte("ab")),
				rawStream(9, sparse, 11, "", le64(65536), []byte("cde")),
				rawStream(9, sparse, 8, "", le64(1<<20)),
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := writeStreams(t, tt.streams)
			if !bytes.Equal(got, tt.wire) {
				t.Errorf("written:\n%x\nwant\n%x", got, tt.wire)
			}
			back, err := readStreams(bytes.NewReader(tt.wire))
			if err != nil {
				t.Fatal(err)
			}
			if !equalStreams(back, tt.streams) {
				t.Errorf("read %+v\nwant %+v", back, tt.streams)
			}
		})
	}
}

func TestBackupReaderPassThrough(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		want StreamHeader
	}{
		{"unknown ID 12", rawStream(12, 0, 2, "", []byte("zz")), StreamHeader{ID: 12, Size: 2}},
		{"largest ID", rawStream(math.MaxUint32, 0xffffffff, 0, ""), StreamHeader{ID: math.MaxUint32, Attributes: 0xffffffff}},
		{"ghosted extents", rawStream(11, StreamAttrContainsGhostedFileExtents, 1, "", []byte{7}), StreamHeader{ID: StreamGhostedFileExtents, Attributes: 0x10, Size: 1}},
		{"name on DATA kept", rawStream(1, 0, 1, "::$DATA", []byte{7}), StreamHeader{ID: StreamData, Size: 1, Name: "::$DATA"}},
		{"non-ASCII name", rawStream(4, 0, 0, ":résumé 𝄞:$DATA"), StreamHeader{ID: StreamAlternateData, Name: ":résumé 𝄞:$DATA"}},
		{"largest size", rawStream(1, 0, MaxStreamSize, ""), StreamHeader{ID: StreamData, Size: MaxStreamSize}},
		{"largest sparse range", rawStream(9, 0, 8, "", le64(math.MaxInt64)), StreamHeader{ID: StreamSparseBlock, Offset: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := NewBackupReader(bytes.NewReader(tt.wire))
			h, err := br.Next()
			if err != nil {
				t.Fatal(err)
			}
			if *h != tt.want {
				t.Errorf("header %+v, want %+v", *h, tt.want)
			}
			if tt.want.Size > 1<<20 {
				return // payload is not present
			}
			if _, err := io.Copy(io.Discard, br); err != nil {
				t.Fatal(err)
			}
			if _, err := br.Next(); err != io.EOF {
				t.Fatalf("Next at end = %v, want io.EOF", err)
			}
			// Rewriting gives the same bytes.
			var buf bytes.Buffer
			bw := NewBackupWriter(&buf)
			if err := bw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			bw.Write(tt.wire[len(tt.wire)-int(h.Size):])
			if err := bw.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), tt.wire) {
				t.Errorf("rewritten %x, want %x", buf.Bytes(), tt.wire)
			}
		})
	}
}

func TestBackupReaderBadHeaders(t *testing.T) {
	prefix := rawStream(1, 0, 3, "", []byte("abc")) // a valid stream first, 23 bytes
	tests := []struct {
		name string
		wire []byte
		off  int64 // relative to the bad header
		text string
	}{
		{"stream ID 0", rawStream(0, 0, 0, ""), 0, "stream ID 0"},
		{"size too large", rawStream(1, 0, MaxStreamSize+1, ""), 0, "exceeds"},
		{"size with top bit", rawStream(1, 0, 1<<63, ""), 0, "exceeds"},
		{"odd name size", cat(le32(4), le32(0), le64(0), le32(3), []byte("abc")), 0, "odd stream name size 3"},
		{"name size too large", cat(le32(4), le32(0), le64(0), le32(MaxStreamNameSize+2)), 0, "stream name size 65538"},
		{"alternate data without name", rawStream(4, 0, 0, ""), 0, "without a name"},
		{"sparse block smaller than offset", rawStream(9, 0, 7, "", make([]byte, 7)), 0, "smaller than its 8-byte offset"},
		{"negative sparse offset", rawStream(9, 0, 8, "", le64(1<<63)), 20, "outside the stream"},
		{"sparse range overflows", rawStream(9, 0, 10, "", le64(math.MaxInt64-1), []byte("ab")), 20, "outside the stream"},
		{"lone high surrogate", cat(le32(4), le32(0), le64(0), le32(4), le16(0xd800), le16('a')), 20, "unpaired UTF-16 surrogate"},
		{"lone low surrogate", cat(le32(4), le32(0), le64(0), le32(4), le16('a'), le16(0xdc00)), 22, "unpaired UTF-16 surrogate"},
		{"high surrogate at end", cat(le32(4), le32(0), le64(0), le32(2), le16(0xdbff)), 20, "unpaired UTF-16 surrogate"},
		{"swapped surrogates", cat(le32(4), le32(0), le64(0), le32(4), le16(0xdc00), le16(0xd800)), 20, "unpaired UTF-16 surrogate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := NewBackupReader(bytes.NewReader(cat(prefix, tt.wire)))
			if _, err := br.Next(); err != nil {
				t.Fatal(err)
			}
			_, err := br.Next() // skips the unread payload "abc"
			wantFormatError(t, err, int64(len(prefix))+tt.off, tt.text)
			if _, again := br.Next(); again != err {
				t.Errorf("error not sticky: %v then %v", err, again)
			}
			if _, rerr := br.Read(make([]byte, 1)); rerr != err {
				t.Errorf("Read after error = %v, want %v", rerr, err)
			}
		})
	}
}

// TestBackupTruncation cuts the golden stream at every byte. Cuts between
// streams are clean ends; every other cut is an io.ErrUnexpectedEOF format
// error, whether payloads are read or skipped.
func TestBackupTruncation(t *testing.T) {
	data := unhex(t, goldenStream)
	boundaries := map[int]int{0: 0}
	n := 0
	for i, s := range goldenStreams() {
		n += len(writeStreams(t, []stream{s}))
		boundaries[n] = i + 1
	}
	if n != len(data) {
		t.Fatalf("stream lengths sum to %d, want %d", n, len(data))
	}
	for _, readPayload := range []bool{true, false} {
		for i := 0; i < len(data); i++ {
			name := fmt.Sprintf("cut at %d, read payload %v", i, readPayload)
			br := NewBackupReader(bytes.NewReader(data[:i]))
			count := 0
			var err error
			for {
				if _, err = br.Next(); err != nil {
					break
				}
				count++
				if readPayload {
					if _, err = io.Copy(io.Discard, br); err != nil {
						break
					}
				}
			}
			if want, ok := boundaries[i]; ok {
				if err != io.EOF || count != want {
					t.Errorf("%s: %d streams, err %v; want %d, io.EOF", name, count, err, want)
				}
				continue
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrInvalidFormat) {
				t.Errorf("%s: err = %v, want a truncation format error", name, err)
			}
		}
	}
}

func TestBackupReaderTruncationMessages(t *testing.T) {
	data := unhex(t, goldenStream)
	tests := []struct {
		name string
		cut  int
		off  int64
		text string
	}{
		{"inside first header", 7, 0, "backup stream header at offset 0: truncated: 7 of 20 bytes present: unexpected EOF"},
		{"inside payload", 30, 20, "SECURITY_DATA stream payload at offset 20: truncated: 10 of 20 bytes present"},
		{"inside name", 128, 121, "backup stream name at offset 121: truncated: 7 of 16 bytes present"},
		{"inside sparse offset", 161, 157, "sparse block offset at offset 157: truncated: 4 of 8 bytes present"},
		{"inside sparse data", 166, 165, "SPARSE_BLOCK stream payload at offset 165: truncated: 1 of 3 bytes present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readStreams(bytes.NewReader(data[:tt.cut]))
			wantFormatError(t, err, tt.off, tt.text)
		})
	}
}

func TestBackupReaderIOErrors(t *testing.T) {
	data := unhex(t, goldenStream)
	boom := errors.New("disk on fire")
	for _, cut := range []int{0, 10, 20, 30, 110} {
		r := io.MultiReader(bytes.NewReader(data[:cut]), iotest.ErrReader(boom))
		_, err := readStreams(r)
		if !errors.Is(err, boom) {
			t.Errorf("cut %d: err = %v, want the reader's error", cut, err)
		}
		if errors.Is(err, ErrInvalidFormat) {
			t.Errorf("cut %d: I/O error %v reported as a format error", cut, err)
		}
	}
	// A timeout on one read is returned and stays.
	br := NewBackupReader(iotest.TimeoutReader(bytes.NewReader(data)))
	if _, err := br.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Next(); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("err = %v, want iotest.ErrTimeout", err)
	}
}

func TestBackupReaderPartialReads(t *testing.T) {
	data := unhex(t, goldenStream)
	br := NewBackupReader(bytes.NewReader(data))
	if n, err := br.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("Read before Next = %d, %v; want 0, io.EOF", n, err)
	}
	h, _ := br.Next() // SECURITY_DATA
	p := make([]byte, 3)
	if n, err := br.Read(p); n != 3 || err != nil || !bytes.Equal(p, nullSD[:3]) {
		t.Fatalf("Read = %d, %v, %x", n, err, p)
	}
	if h.ID != StreamSecurityData {
		t.Fatalf("first stream %s", h.ID)
	}
	h, _ = br.Next() // skips 17 bytes
	if h.ID != StreamEAData {
		t.Fatalf("second stream %s, want EA_DATA", h.ID)
	}
	h, _ = br.Next()
	big := make([]byte, 100)
	n, err := br.Read(big)
	if n != 5 || err != nil || string(big[:n]) != "hello" {
		t.Errorf("Read of DATA = %d, %v, %q", n, err, big[:n])
	}
	if n, err := br.Read(big); n != 0 || err != io.EOF {
		t.Errorf("Read at end of payload = %d, %v", n, err)
	}
}

func TestBackupWriterErrors(t *testing.T) {
	t.Run("too long", func(t *testing.T) {
		var buf bytes.Buffer
		bw := NewBackupWriter(&buf)
		if err := bw.WriteHeader(&StreamHeader{ID: StreamData, Size: 3}); err != nil {
			t.Fatal(err)
		}
		n, err := bw.Write([]byte("abcd"))
		if n != 3 || !errors.Is(err, ErrWriteTooLong) {
			t.Errorf("Write = %d, %v; want 3, ErrWriteTooLong", n, err)
		}
		if err := bw.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
		if got := buf.Len(); got != 23 {
			t.Errorf("wrote %d bytes, want 23", got)
		}
	})
	t.Run("write without header", func(t *testing.T) {
		bw := NewBackupWriter(io.Discard)
		if _, err := bw.Write([]byte("x")); !errors.Is(err, ErrWriteTooLong) {
			t.Errorf("Write = %v, want ErrWriteTooLong", err)
		}
		if n, err := bw.Write(nil); n != 0 || err != nil {
			t.Errorf("empty Write = %d, %v", n, err)
		}
	})
	t.Run("too short", func(t *testing.T) {
		bw := NewBackupWriter(io.Discard)
		bw.WriteHeader(&StreamHeader{ID: StreamData, Size: 3})
		bw.Write([]byte("a"))
		err := bw.WriteHeader(&StreamHeader{ID: StreamEAData})
		if !errors.Is(err, ErrWriteTooShort) || !strings.Contains(err.Error(), "DATA stream has 1 of 3 bytes") {
			t.Errorf("WriteHeader = %v, want ErrWriteTooShort", err)
		}
		if err := bw.Close(); !errors.Is(err, ErrWriteTooShort) {
			t.Errorf("Close = %v, want ErrWriteTooShort", err)
		}
	})
	t.Run("after close", func(t *testing.T) {
		bw := NewBackupWriter(io.Discard)
		if err := bw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := bw.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		if err := bw.WriteHeader(&StreamHeader{ID: StreamData}); err != ErrWriteAfterClose {
			t.Errorf("WriteHeader after Close = %v", err)
		}
		if _, err := bw.Write(nil); err != ErrWriteAfterClose {
			t.Errorf("Write after Close = %v", err)
		}
	})
	t.Run("sticky write error", func(t *testing.T) {
		boom := errors.New("disk full")
		bw := NewBackupWriter(failingWriter{boom})
		err := bw.WriteHeader(&StreamHeader{ID: StreamData, Size: 1})
		if !errors.Is(err, boom) || errors.Is(err, ErrInvalidFormat) {
			t.Errorf("WriteHeader = %v, want the writer's error", err)
		}
		if _, err2 := bw.Write([]byte("x")); err2 != err {
			t.Errorf("Write after failure = %v, want %v", err2, err)
		}
		if err2 := bw.Close(); err2 != err {
			t.Errorf("Close after failure = %v, want %v", err2, err)
		}
	})
	t.Run("short write", func(t *testing.T) {
		bw := NewBackupWriter(shortWriter{})
		if err := bw.WriteHeader(&StreamHeader{ID: StreamData}); !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("WriteHeader = %v, want io.ErrShortWrite", err)
		}
	})
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestBackupWriterBadHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    StreamHeader
		text string
	}{
		{"stream ID 0", StreamHeader{}, "stream ID 0"},
		{"negative size", StreamHeader{ID: StreamData, Size: -1}, "outside"},
		{"size too large", StreamHeader{ID: StreamData, Size: MaxStreamSize + 1}, "outside"},
		{"alternate data without name", StreamHeader{ID: StreamAlternateData}, "without a name"},
		{"invalid UTF-8 name", StreamHeader{ID: StreamAlternateData, Name: ":\xff:$DATA"}, "not valid UTF-8"},
		{"name too long", StreamHeader{ID: StreamAlternateData, Name: strings.Repeat("x", MaxStreamNameSize/2+1)}, "limit 65536"},
		{"sparse size too large", StreamHeader{ID: StreamSparseBlock, Size: MaxStreamSize - 7}, "exceeds"},
		{"negative sparse offset", StreamHeader{ID: StreamSparseBlock, Offset: -1}, "outside the stream"},
		{"sparse range overflows", StreamHeader{ID: StreamSparseBlock, Size: 2, Offset: math.MaxInt64 - 1}, "outside the stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			bw := NewBackupWriter(&buf)
			bw.WriteHeader(&StreamHeader{ID: StreamData, Size: 1})
			bw.Write([]byte("x"))
			err := bw.WriteHeader(&tt.h)
			off := int64(21)
			if strings.Contains(tt.text, "UTF-8") || strings.Contains(tt.text, "limit") {
				off += BackupHeaderSize
			}
			wantFormatError(t, err, off, tt.text)
			if buf.Len() != 21 {
				t.Errorf("rejected header wrote %d bytes", buf.Len()-21)
			}
			// The writer is still usable.
			if err := bw.WriteHeader(&StreamHeader{ID: StreamData}); err != nil {
				t.Errorf("WriteHeader after rejected header: %v", err)
			}
		})
	}
	// The largest name is accepted.
	bw := NewBackupWriter(io.Discard)
	if err := bw.WriteHeader(&StreamHeader{ID: StreamAlternateData, Name: strings.Repeat("x", MaxStreamNameSize/2)}); err != nil {
		t.Errorf("largest name: %v", err)
	}
}

func TestStreamIDString(t *testing.T) {
	tests := map[StreamID]string{
		StreamData: "DATA", StreamEAData: "EA_DATA", StreamSecurityData: "SECURITY_DATA",
		StreamAlternateData: "ALTERNATE_DATA", StreamLink: "LINK", StreamPropertyData: "PROPERTY_DATA",
		StreamObjectID: "OBJECT_ID", StreamReparseData: "REPARSE_DATA", StreamSparseBlock: "SPARSE_BLOCK",
		StreamTxfsData: "TXFS_DATA", StreamGhostedFileExtents: "GHOSTED_FILE_EXTENTS",
		0: "StreamID(0)", 12: "StreamID(12)", math.MaxUint32: "StreamID(4294967295)",
	}
	for id, want := range tests {
		if got := id.String(); got != want {
			t.Errorf("StreamID(%d).String() = %q, want %q", uint32(id), got, want)
		}
	}
}

// TestBackupReaderAllocation checks that size fields alone do not cause
// large allocations.
func TestBackupReaderAllocation(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{"huge payload", rawStream(1, 0, MaxStreamSize, "")},
		{"largest name, absent", cat(le32(4), le32(0), le64(0), le32(MaxStreamNameSize))},
		{"largest name, partly present", cat(le32(4), le32(0), le64(0), le32(MaxStreamNameSize), make([]byte, 1000))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := allocatedBytes(func() {
				readStreams(bytes.NewReader(tt.wire))
			})
			if limit := uint64(16 << 10); got > limit {
				t.Errorf("allocated %d bytes for %d bytes of input, limit %d", got, len(tt.wire), limit)
			}
		})
	}
}

func TestBackupReaderWriteTo(t *testing.T) {
	data := unhex(t, goldenStream)
	t.Run("copies each payload", func(t *testing.T) {
		br := NewBackupReader(bytes.NewReader(data))
		for _, want := range goldenStreams() {
			if _, err := br.Next(); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			n, err := br.WriteTo(&buf)
			if err != nil || n != int64(len(want.data)) || !bytes.Equal(buf.Bytes(), want.data) {
				t.Errorf("%s: WriteTo = %d, %v, %q", want.h.ID, n, err, buf.Bytes())
			}
			if n, err := br.WriteTo(&buf); n != 0 || err != nil {
				t.Errorf("second WriteTo = %d, %v", n, err)
			}
		}
		if _, err := br.Next(); err != io.EOF {
			t.Fatalf("Next = %v", err)
		}
		if n, err := br.WriteTo(io.Discard); n != 0 || err != nil {
			t.Errorf("WriteTo after the end = %d, %v", n, err)
		}
	})
	t.Run("truncated payload", func(t *testing.T) {
		br := NewBackupReader(bytes.NewReader(data[:30]))
		br.Next()
		var buf bytes.Buffer
		n, err := br.WriteTo(&buf)
		if n != 10 || !errors.Is(err, io.ErrUnexpectedEOF) || buf.Len() != 10 {
			t.Errorf("WriteTo = %d, %v", n, err)
		}
		if _, err2 := br.WriteTo(&buf); err2 != err {
			t.Errorf("error not sticky: %v", err2)
		}
	})
	t.Run("destination error", func(t *testing.T) {
		boom := errors.New("pipe closed")
		br := NewBackupReader(bytes.NewReader(data))
		br.Next()
		if _, err := br.WriteTo(failingWriter{boom}); err != boom {
			t.Errorf("WriteTo = %v, want the writer's error", err)
		}
		// The reader itself is still usable.
		h, err := br.Next()
		if err != nil || h.ID != StreamEAData {
			t.Errorf("Next after destination error = %v, %v", h, err)
		}
	})
}

// TestBackupReaderCopyAllocation checks that copying many small payloads
// with io.Copy does not allocate a copy buffer per stream.
func TestBackupReaderCopyAllocation(t *testing.T) {
	const streams = 1000
	var wire []byte
	for i := range streams {
		wire = append(wire, rawStream(1, 0, uint64(i%2), "", make([]byte, i%2))...)
	}
	got := allocatedBytes(func() {
		br := NewBackupReader(bytes.NewReader(wire))
		for {
			if _, err := br.Next(); err != nil {
				break
			}
			io.Copy(io.Discard, br)
		}
	})
	if perStream := got / streams; perStream > 256 {
		t.Errorf("allocated %d bytes per stream", perStream)
	}
}
