package wclayer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// LayerWriter is an interface that supports writing a new container image layer.
type LayerWriter interface {
	// Add adds a file to the layer with given metadata.
	Add(name string, fileInfo *winfile.BasicInfo) error
	// AddLink adds a hard link to the layer. The target must already have been added.
	AddLink(name string, target string) error
	// Remove removes a file that was present in a parent layer from the layer.
	Remove(name string) error
	// Write writes data to the current file. The data must be in the format of a Win32
	// backup stream.
	Write(b []byte) (int, error)
	// Close finishes the layer writing process and releases any resources.
	Close() error
}

// maxMetadataStream bounds the security descriptor, EA, reparse and opaque streams a
// writer buffers for one file. Real ones are far smaller (an EA buffer is at most
// 64 KiB, a reparse buffer 16 KiB).
const maxMetadataStream = 4 << 20

// ErrMetadataTooLarge: a metadata stream of a backup stream exceeds 4 MiB.
var ErrMetadataTooLarge = errors.New("wclayer: backup metadata stream too large")

// NewLayerWriter returns a new layer writer for creating a layer on disk at path, with
// the given parents (immediate parent first, base layer last). Names passed to the
// writer are layer-relative Windows paths such as `Files\Windows\System32\x.dll`.
//
// The layer becomes visible at path only when Close succeeds; on Linux no privilege is
// needed.
func NewLayerWriter(ctx context.Context, path string, parentLayerPaths []string) (LayerWriter, error) {
	w, err := winlayer.NewWriter(ctx, path, parentLayerPaths)
	if err != nil {
		return nil, err
	}
	return &backupLayerWriter{w: w}, nil
}

// backupLayerWriter turns each file's Win32 backup stream into calls on a
// winlayer.Writer. A goroutine per file parses the stream with winfile.BackupReader
// from a pipe that Write feeds, so the stream is never held in memory.
type backupLayerWriter struct {
	w      *winlayer.Writer
	pw     *io.PipeWriter
	done   chan error
	err    error
	closed bool
}

var _ LayerWriter = (*backupLayerWriter)(nil)

func (lw *backupLayerWriter) fail(err error) error {
	if lw.err == nil {
		lw.err = err
	}
	return lw.err
}

// endFile waits for the current file's stream to be consumed.
func (lw *backupLayerWriter) endFile() error {
	if lw.pw == nil {
		return lw.err
	}
	lw.pw.Close()
	err := <-lw.done
	lw.pw, lw.done = nil, nil
	if err != nil {
		return lw.fail(err)
	}
	return lw.err
}

func (lw *backupLayerWriter) Add(name string, fileInfo *winfile.BasicInfo) error {
	if err := lw.endFile(); err != nil {
		return err
	}
	if lw.closed {
		return winlayer.ErrClosed
	}
	if fileInfo == nil {
		return lw.fail(fmt.Errorf("wclayer: Add %s: nil file information", name))
	}
	e := &winlayer.Entry{Name: toSlash(name), Info: *fileInfo}
	pr, pw := io.Pipe()
	lw.pw, lw.done = pw, make(chan error, 1)
	go func() {
		err := applyBackupStream(lw.w, e, pr)
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		lw.done <- err
	}()
	return nil
}

func (lw *backupLayerWriter) Write(b []byte) (int, error) {
	if lw.err != nil {
		return 0, lw.err
	}
	if lw.pw == nil {
		return 0, lw.fail(fmt.Errorf("wclayer: Write: %w", winlayer.ErrNoEntry))
	}
	n, err := lw.pw.Write(b)
	if err != nil {
		// The parser stopped: report its error, not the pipe's.
		return n, lw.endFile()
	}
	return n, nil
}

func (lw *backupLayerWriter) AddLink(name, target string) error {
	if err := lw.endFile(); err != nil {
		return err
	}
	if err := lw.w.AddLink(toSlash(name), toSlash(target)); err != nil {
		return lw.fail(err)
	}
	return nil
}

func (lw *backupLayerWriter) Remove(name string) error {
	if err := lw.endFile(); err != nil {
		return err
	}
	if err := lw.w.Remove(toSlash(name)); err != nil {
		return lw.fail(err)
	}
	return nil
}

func (lw *backupLayerWriter) Close() error {
	if lw.closed {
		return winlayer.ErrClosed
	}
	err := lw.endFile()
	lw.closed = true
	if err != nil {
		lw.w.Abort()
		return err
	}
	return lw.w.Close()
}

func toSlash(name string) string { return strings.ReplaceAll(name, `\`, "/") }

// applyBackupStream reads one file's backup stream and writes the entry e with it.
// Metadata streams that precede the data are gathered first, so the entry is created
// with them; ones that come after the data still reach the entry before it is stored.
func applyBackupStream(w *winlayer.Writer, e *winlayer.Entry, r io.Reader) error {
	br := winfile.NewBackupReader(r)
	added := false
	add := func(size int64, noData bool) error {
		if added {
			return nil
		}
		added = true
		e.Size, e.NoDataStream = size, noData
		return w.Add(e)
	}
	// meta is where metadata goes: e before Add, the writer's copy after.
	meta := func() *winlayer.Entry {
		if added {
			return w.Current()
		}
		return e
	}
	for {
		h, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backup stream of %s: %w", e.Name, err)
		}
		switch h.ID {
		case winfile.StreamData:
			if added {
				return fmt.Errorf("backup stream of %s: %w: data stream after alternate data streams or a second data stream", e.Name, winlayer.ErrNotSupported)
			}
			if err := add(h.Size, false); err != nil {
				return err
			}
			if err := copyPayload(w, br); err != nil {
				return err
			}
		case winfile.StreamAlternateData:
			if err := add(0, !e.IsDir()); err != nil {
				return err
			}
			if err := w.AddStream(h.Name, h.Size, h.Attributes); err != nil {
				return err
			}
			if err := copyPayload(w, br); err != nil {
				return err
			}
		case winfile.StreamSparseBlock:
			if !added {
				return fmt.Errorf("backup stream of %s: %w: sparse block before its data stream", e.Name, winfile.ErrInvalidFormat)
			}
			// A block belongs to the data or alternate stream started last.
			if err := writeSparseBlock(w, h, br); err != nil {
				return err
			}
		case winfile.StreamSecurityData, winfile.StreamEAData, winfile.StreamReparseData:
			b, err := readMetadata(br, h)
			if err != nil {
				return fmt.Errorf("backup stream of %s: %w", e.Name, err)
			}
			m := meta()
			switch h.ID {
			case winfile.StreamSecurityData:
				m.SecurityDescriptor = b
			case winfile.StreamEAData:
				eas, err := winfile.DecodeExtendedAttributes(b)
				if err != nil {
					return fmt.Errorf("backup stream of %s: %w", e.Name, err)
				}
				m.ExtendedAttributes = eas
			case winfile.StreamReparseData:
				if added {
					return fmt.Errorf("backup stream of %s: %w: reparse data after the data stream", e.Name, winlayer.ErrNotSupported)
				}
				m.Reparse = b
			}
		default:
			b, err := readMetadata(br, h)
			if err != nil {
				return fmt.Errorf("backup stream of %s: %w", e.Name, err)
			}
			m := meta()
			m.RawStreams = append(m.RawStreams, winlayer.RawStream{ID: h.ID, Attributes: h.Attributes, Name: h.Name, Data: b})
		}
	}
	return add(0, !e.IsDir())
}

func readMetadata(br *winfile.BackupReader, h *winfile.StreamHeader) ([]byte, error) {
	if h.Size > maxMetadataStream {
		return nil, fmt.Errorf("%w: %s stream of %d bytes", ErrMetadataTooLarge, h.ID, h.Size)
	}
	b := make([]byte, h.Size)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}

func copyPayload(w io.Writer, br *winfile.BackupReader) error {
	buf := make([]byte, 256<<10)
	_, err := io.CopyBuffer(w, br, buf)
	return err
}

// writeSparseBlock writes one allocated range; a block without data gives the logical
// size of the stream.
func writeSparseBlock(w *winlayer.Writer, h *winfile.StreamHeader, br *winfile.BackupReader) error {
	end := h.Offset + h.Size
	if h.Offset < 0 || end < h.Offset {
		return fmt.Errorf("%w: sparse block at offset %d", winfile.ErrInvalidFormat, h.Offset)
	}
	if err := w.SetSize(end); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	off := h.Offset
	for off < end {
		n, err := br.Read(buf[:min(int64(len(buf)), end-off)])
		if n > 0 {
			if _, werr := w.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != end {
		return fmt.Errorf("%w: sparse block truncated", winfile.ErrInvalidFormat)
	}
	return nil
}
