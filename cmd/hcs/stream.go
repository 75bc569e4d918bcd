package main

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// stdio is the --file value naming standard input or output.
const stdio = "-"

// ctxReader fails with the context's error once it is canceled, so a long copy stops
// within one buffer. A read already blocked (on a pipe) is not interrupted.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ctxWriter is the writing counterpart of ctxReader.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// input is an opened tar source.
type input struct {
	io.Reader
	name  string // for messages: the path, or "standard input"
	size  int64  // bytes left to read, 0 when unknown
	close func() error
}

// openInput opens name, or standard input for "-". It refuses a terminal, which
// cannot hold a tar. The size is known for regular files.
func (a *app) openInput(name string) (*input, error) {
	if name == stdio {
		if progress.IsTerminal(a.stdin) {
			return nil, usageErrorf("refusing to read a tar from a terminal: give -f FILE or redirect standard input")
		}
		in := &input{Reader: a.stdin, name: "standard input", close: func() error { return nil }}
		if f, ok := a.stdin.(*os.File); ok {
			in.size = remaining(f)
		}
		return in, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return &input{Reader: f, name: name, size: remaining(f), close: f.Close}, nil
}

// remaining returns the bytes between the offset of f and its end when f is a
// regular file, else 0.
func remaining(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return 0
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil || off > st.Size() {
		return 0
	}
	return st.Size() - off
}

// checkLayerDir accepts a layer folder written by hcs, or a folder holding at least
// one of Files/, Hives/ and UtilityVM/ (a layer tree made by other tools). Anything
// else would read as an empty layer, which is more likely a wrong path.
func checkLayerDir(path string) error {
	ok, err := winlayer.Exists(path)
	if err != nil || ok {
		return err
	}
	for _, d := range []string{winlayer.FilesDir, winlayer.HivesDir, winlayer.UtilityVMDir} {
		if st, err := os.Stat(filepath.Join(path, d)); err == nil && st.IsDir() {
			return nil
		}
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	return &notLayerError{path: path, detail: "no layer metadata and no Files, Hives or UtilityVM folder"}
}

// notLayerError reports a path that is not a layer folder. It matches
// winlayer.ErrNotLayer, and so fs.ErrNotExist.
type notLayerError struct {
	path   string
	detail string // why, or what to do
}

func (e *notLayerError) Error() string {
	return e.path + " is not a layer folder: " + e.detail
}

func (e *notLayerError) Unwrap() error { return winlayer.ErrNotLayer }
