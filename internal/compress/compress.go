// Package compress reads and writes the compressions used for layer tars: gzip and
// zstd. NewReader recognises the compression from the first bytes of the stream, so a
// caller can accept plain, gzip and zstd input without being told which it is.
//
// # Memory
//
// The zstd decoder runs synchronously (one block at a time) in low-memory mode and
// refuses frames whose window is larger than [MaxWindow], so hostile input cannot make
// it allocate more than a few hundred MiB.
//
// # Errors
//
// A decoder failure caused by the data is returned wrapped in [ErrCorrupt]; a
// compressed stream that ends early also matches io.ErrUnexpectedEOF. Errors of the
// underlying reader are returned unchanged. Compressions that are recognised but not
// supported (xz, bzip2) give an error that matches [ErrUnsupported].
package compress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Format is a compression format.
type Format int

// Formats.
const (
	None Format = iota
	Gzip
	Zstd
)

func (f Format) String() string {
	switch f {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// MaxWindow is the largest zstd window the decoder accepts (256 MiB). The zstd
// command line tool uses at most 128 MiB unless told --long=31.
const MaxWindow = 256 << 20

// Errors.
var (
	// ErrCorrupt: the compressed data cannot be decoded.
	ErrCorrupt = errors.New("compress: corrupt compressed data")
	// ErrUnsupported: the data uses a compression this package does not read.
	// Matches errors.ErrUnsupported.
	ErrUnsupported error = unsupportedError{}
)

type unsupportedError struct{}

func (unsupportedError) Error() string        { return "compress: unsupported compression" }
func (unsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }

// Magic numbers at the start of a compressed stream.
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte{'B', 'Z', 'h'}
)

const bufferSize = 256 << 10

// Detect returns the compression of the stream buffered in br by peeking at its first
// bytes; it consumes nothing. A stream shorter than a magic number is plain.
func Detect(br *bufio.Reader) (Format, error) {
	head, err := br.Peek(len(magicXz))
	if err != nil && err != io.EOF {
		return None, err
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return Gzip, nil
	case bytes.HasPrefix(head, magicZstd):
		return Zstd, nil
	case bytes.HasPrefix(head, magicXz):
		return None, fmt.Errorf("%w: xz", ErrUnsupported)
	case bytes.HasPrefix(head, magicBzip2):
		return None, fmt.Errorf("%w: bzip2", ErrUnsupported)
	}
	return None, nil
}

// NewReader returns a reader of the decompressed content of r, which may be gzip
// (several members are read as one stream), zstd, or not compressed. Close releases
// the decoder; it does not close r.
func NewReader(r io.Reader) (io.ReadCloser, error) {
	rc, _, err := NewReaderFormat(r)
	return rc, err
}

// NewReaderFormat is NewReader that also reports the compression it found.
func NewReaderFormat(r io.Reader) (io.ReadCloser, Format, error) {
	src := &sourceReader{r: r}
	br := bufio.NewReaderSize(src, bufferSize)
	f, err := Detect(br)
	if err != nil {
		return nil, None, err
	}
	switch f {
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, f, src.classify(f, err)
		}
		return &decoder{r: zr, close: zr.Close, src: src, format: f}, f, nil
	case Zstd:
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(MaxWindow),
			zstd.WithDecoderMaxWindow(MaxWindow))
		if err != nil {
			return nil, f, err
		}
		return &decoder{r: zr, close: func() error { zr.Close(); return nil }, src: src, format: f}, f, nil
	}
	return io.NopCloser(br), None, nil
}

// sourceReader remembers the last error of the compressed source, so that decoder
// errors can be told apart from I/O errors.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// classify returns errors of the source unchanged and wraps the others in ErrCorrupt.
func (s *sourceReader) classify(f Format, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if s.err != nil && errors.Is(err, s.err) {
		return err
	}
	return fmt.Errorf("%w (%s): %w", ErrCorrupt, f, err)
}

type decoder struct {
	r      io.Reader
	close  func() error
	src    *sourceReader
	format Format
}

func (d *decoder) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	return n, d.src.classify(d.format, err)
}

func (d *decoder) Close() error { return d.close() }

// NewWriter returns a writer that compresses to w in format f with the default level
// of each format. Close flushes the compressed stream; it does not close w.
func NewWriter(w io.Writer, f Format) (io.WriteCloser, error) {
	switch f {
	case None:
		return nopWriteCloser{w}, nil
	case Gzip:
		return gzip.NewWriter(w), nil
	case Zstd:
		return zstd.NewWriter(w)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnsupported, f)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
