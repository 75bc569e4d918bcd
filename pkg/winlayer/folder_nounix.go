//go:build !unix

package winlayer

import (
	"context"
	"fmt"
	"io"
	"os"

	"errors"
)

// ErrFolderOnThisOS means this system cannot read or write layer folders: the
// folder Reader and Writer work through directory file descriptors (openat and
// its relatives, flock), which only Unix systems have. The formats themselves
// (entries, records, the metadata database) are portable.
var ErrFolderOnThisOS = fmt.Errorf("winlayer: layer folders are read and written on Unix systems only: %w", errors.ErrUnsupported)

// Reader is the layer folder reader; on this system NewReader fails with
// ErrFolderOnThisOS.
type Reader struct{}

// NewReader fails with ErrFolderOnThisOS.
func NewReader(ctx context.Context, path string) (*Reader, error) {
	return nil, &LayerError{Layer: path, Op: "open", Err: ErrFolderOnThisOS}
}

func (r *Reader) Next() (*Entry, error)                      { return nil, ErrFolderOnThisOS }
func (r *Reader) Read(p []byte) (int, error)                 { return 0, ErrFolderOnThisOS }
func (r *Reader) ReadDataInto(p []byte) error                { return ErrFolderOnThisOS }
func (r *Reader) OpenData() (io.ReadCloser, error)           { return nil, ErrFolderOnThisOS }
func (r *Reader) DataRanges() ([][2]int64, error)            { return nil, ErrFolderOnThisOS }
func (r *Reader) OpenStream(s Stream) (io.ReadCloser, error) { return nil, ErrFolderOnThisOS }
func (r *Reader) Close() error                               { return nil }

// Writer is the layer folder writer; on this system NewWriter fails with
// ErrFolderOnThisOS.
type Writer struct{ path string }

// NewWriter fails with ErrFolderOnThisOS.
func NewWriter(ctx context.Context, path string, parents []string, opts ...Option) (*Writer, error) {
	return nil, &LayerError{Layer: path, Op: "create", Err: ErrFolderOnThisOS}
}

func (w *Writer) Path() string       { return w.path }
func (w *Writer) Add(e *Entry) error { return ErrFolderOnThisOS }
func (w *Writer) AddStream(name string, size int64, attributes uint32) error {
	return ErrFolderOnThisOS
}
func (w *Writer) Write(p []byte) (int, error)              { return 0, ErrFolderOnThisOS }
func (w *Writer) WriteAt(p []byte, off int64) (int, error) { return 0, ErrFolderOnThisOS }
func (w *Writer) SetSize(size int64) error                 { return ErrFolderOnThisOS }
func (w *Writer) Current() *Entry                          { return nil }
func (w *Writer) AddLink(name, target string) error        { return ErrFolderOnThisOS }
func (w *Writer) Remove(name string) error                 { return ErrFolderOnThisOS }
func (w *Writer) Abort() error                             { return nil }
func (w *Writer) Close() error                             { return ErrFolderOnThisOS }

// CleanStale does nothing here: no writer of this system stages a folder.
func CleanStale(dir string) {}

// Check fails with ErrFolderOnThisOS.
func Check(ctx context.Context, path string) ([]Problem, error) {
	return nil, &LayerError{Layer: path, Op: "check", Err: ErrFolderOnThisOS}
}

// dataRanges reports the whole file as data: holes cannot be found here.
func dataRanges(f *os.File, size int64) ([][2]int64, error) { return [][2]int64{{0, size}}, nil }
