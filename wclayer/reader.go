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

// LayerReader is an interface that supports reading an existing container image layer.
type LayerReader interface {
	// Next advances to the next file and returns its name (a layer-relative Windows
	// path), the size of its data and its basic information. A nil fileInfo marks a
	// file that the layer removes from its parents. It returns io.EOF at the end.
	Next() (string, int64, *winfile.BasicInfo, error)
	// Read reads the current file as a Win32 backup stream.
	Read(b []byte) (int, error)
	// Close releases the reader.
	Close() error
}

// NewLayerReader returns a new layer reader for reading the contents of an on-disk
// layer. In the folder form a read-only layer holds all of its content, so
// parentLayerPaths are not read for it. Hard links are returned as files with their
// full content, as Windows returns them.
//
// A read-write (scratch) layer reads as its changes to its parents: what was written
// through its union, from its volume (see ExportLayer for how the changes and their
// Windows metadata are read). parentLayerPaths name the parents, immediate parent
// first; when empty, the layer's layerchain.json does. A scratch layer that is not
// active is activated until Close.
func NewLayerReader(ctx context.Context, path string, parentLayerPaths []string) (LayerReader, error) {
	r, err := openLayerSource(ctx, path, parentLayerPaths)
	if err != nil {
		return nil, fmt.Errorf("wclayer: reading layer %s: %w", path, err)
	}
	return &backupLayerReader{r: r}, nil
}

// backupLayerReader produces each entry's backup stream from a goroutine writing into
// a pipe, so contents stream through without being held in memory.
type backupLayerReader struct {
	r    entrySource
	pr   *io.PipeReader
	done chan struct{}
	err  error
}

var _ LayerReader = (*backupLayerReader)(nil)

func (lr *backupLayerReader) stopStream() {
	if lr.pr != nil {
		lr.pr.CloseWithError(io.ErrClosedPipe)
		<-lr.done
		lr.pr, lr.done = nil, nil
	}
}

func (lr *backupLayerReader) Next() (string, int64, *winfile.BasicInfo, error) {
	if lr.err != nil {
		return "", 0, nil, lr.err
	}
	lr.stopStream()
	e, err := lr.r.Next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			lr.err = err
		}
		return "", 0, nil, err
	}
	name := strings.ReplaceAll(e.Name, "/", `\`)
	if e.Removed {
		return name, 0, nil, nil
	}
	pr, pw := io.Pipe()
	lr.pr, lr.done = pr, make(chan struct{})
	go func() {
		defer close(lr.done)
		pw.CloseWithError(writeBackupStream(pw, lr.r, e))
	}()
	info := e.Info
	return name, e.Size, &info, nil
}

func (lr *backupLayerReader) Read(b []byte) (int, error) {
	if lr.pr == nil {
		return 0, io.EOF
	}
	return lr.pr.Read(b)
}

func (lr *backupLayerReader) Close() error {
	lr.stopStream()
	if lr.err == nil {
		lr.err = winlayer.ErrClosed
	}
	return lr.r.Close()
}

// writeBackupStream writes the backup stream of entry e in the order BackupRead uses:
// security, EAs, reparse data, the unnamed data (sparse files as allocated ranges),
// alternate data streams, then any opaque streams kept from the import.
func writeBackupStream(w io.Writer, r entrySource, e *winlayer.Entry) error {
	bw := winfile.NewBackupWriter(w)
	small := func(id winfile.StreamID, attrs uint32, name string, b []byte) error {
		if err := bw.WriteHeader(&winfile.StreamHeader{ID: id, Attributes: attrs, Name: name, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err := bw.Write(b)
		return err
	}
	if len(e.SecurityDescriptor) > 0 {
		if err := small(winfile.StreamSecurityData, winfile.StreamAttrContainsSecurity, "", e.SecurityDescriptor); err != nil {
			return err
		}
	}
	if len(e.ExtendedAttributes) > 0 {
		b, err := winfile.EncodeExtendedAttributes(e.ExtendedAttributes)
		if err != nil {
			return err
		}
		if err := small(winfile.StreamEAData, 0, "", b); err != nil {
			return err
		}
	}
	if len(e.Reparse) > 0 {
		if err := small(winfile.StreamReparseData, 0, "", e.Reparse); err != nil {
			return err
		}
	}
	if !e.IsDir() && !e.NoDataStream {
		if err := writeData(bw, r, e); err != nil {
			return err
		}
	}
	for _, s := range e.Streams {
		rc, err := r.OpenStream(s)
		if err != nil {
			return err
		}
		err = bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamAlternateData, Attributes: s.Attributes &^ winfile.StreamAttrSparse, Name: s.Name, Size: s.Size})
		if err == nil {
			_, err = io.Copy(bw, io.LimitReader(rc, s.Size))
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("stream %s%s: %w", e.Name, s.Name, err)
		}
	}
	for _, s := range e.RawStreams {
		if err := small(s.ID, s.Attributes, s.Name, s.Data); err != nil {
			return err
		}
	}
	return bw.Close()
}

// writeData writes the unnamed data stream; a sparse file with holes becomes an empty
// DATA stream followed by one sparse block per allocated range and a final block whose
// offset is the logical size.
func writeData(bw *winfile.BackupWriter, r entrySource, e *winlayer.Entry) error {
	rc, err := r.OpenData()
	if err != nil {
		return err
	}
	defer rc.Close()
	sparse := e.Info.FileAttributes&winfile.AttrSparseFile != 0
	var ranges [][2]int64
	if sparse && e.Size > 0 {
		if ranges, err = r.DataRanges(); err != nil {
			return err
		}
	}
	if !sparse || e.Size == 0 || len(ranges) == 1 && ranges[0] == [2]int64{0, e.Size} {
		attrs := uint32(0)
		if sparse {
			attrs = winfile.StreamAttrSparse
		}
		if err := bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamData, Attributes: attrs, Size: e.Size}); err != nil {
			return err
		}
		n, err := io.Copy(bw, io.LimitReader(rc, e.Size))
		if err == nil && n != e.Size {
			err = fmt.Errorf("%s: read %d of %d bytes", e.Name, n, e.Size)
		}
		return err
	}
	if err := bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamData, Attributes: winfile.StreamAttrSparse}); err != nil {
		return err
	}
	ra, ok := rc.(io.ReaderAt)
	if !ok {
		return fmt.Errorf("%s: sparse data is not seekable", e.Name)
	}
	for _, rg := range ranges {
		if err := bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamSparseBlock, Attributes: winfile.StreamAttrSparse, Offset: rg[0], Size: rg[1]}); err != nil {
			return err
		}
		if _, err := io.Copy(bw, io.NewSectionReader(ra, rg[0], rg[1])); err != nil {
			return err
		}
	}
	return bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamSparseBlock, Attributes: winfile.StreamAttrSparse, Offset: e.Size})
}
