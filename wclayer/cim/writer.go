package cim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// CimLayerWriter writes a container image layer as a CIM, with hcsshim's calls.
// Names are layer-relative Windows paths such as `Files\Windows\System32\x.dll`
// ('/' works too). It is not safe for concurrent use.
type CimLayerWriter struct {
	ctx        context.Context
	path       string
	w          *cimfs.Writer
	createdDir bool
	current    string // the file added last, for AddAlternateStream
	v          *winlayer.Validator
	err        error
	closed     bool
}

// ErrClosed: the writer was used after Close.
var ErrClosed = errors.New("cim: layer writer closed")

// NewCimLayerWriter starts writing the layer at path. parentLayerPaths are the parent
// layers, immediate parent first; the immediate parent must be a CIM layer in the same
// cim-layers folder, and the new image forks it. It fails if path already has a CIM.
func NewCimLayerWriter(ctx context.Context, path string, parentLayerPaths []string) (_ *CimLayerWriter, err error) {
	if IsCimLayer(path) {
		return nil, &fs.PathError{Op: "create CIM layer", Path: GetCimPathFromLayer(path), Err: cimfs.ErrExists}
	}
	parent, err := parentCim(path, parentLayerPaths)
	if err != nil {
		return nil, err
	}
	dir := GetCimDirFromLayer(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cimfs.CleanStale(dir)
	cw := &CimLayerWriter{ctx: ctx, path: path}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(path, 0o755); err != nil {
			return nil, err
		}
		cw.createdDir = true
	}
	cw.w, err = cimfs.Create(dir, GetCimNameFromLayer(path), parent)
	if err != nil {
		cw.removeDir()
		return nil, err
	}
	cw.v = winlayer.NewValidator(len(parentLayerPaths) == 0, cw.parentKind)
	return cw, nil
}

// parentKind answers the Validator from the forked parent tree: the Validator asks
// only about names this layer has not touched yet.
func (cw *CimLayerWriter) parentKind(name string) winlayer.Kind {
	found, isDir, reparse := cw.w.Lookup(name)
	switch {
	case !found:
		return winlayer.KindNone
	case isDir && reparse:
		return winlayer.KindDirLink
	case isDir:
		return winlayer.KindDir
	case reparse:
		return winlayer.KindLink
	}
	return winlayer.KindFile
}

// entryErr wraps a failure of the Validator or the image writer with the layer and
// entry it concerns.
func (cw *CimLayerWriter) entryErr(op, name string, err error) error {
	var ee *winlayer.EntryError
	if errors.As(err, &ee) {
		return err
	}
	return &winlayer.EntryError{Layer: cw.path, Entry: name, Op: op, Err: err}
}

func (cw *CimLayerWriter) removeDir() {
	if cw.createdDir {
		os.Remove(cw.path)
	}
}

func (cw *CimLayerWriter) ready() error {
	if cw.closed {
		return ErrClosed
	}
	if cw.err != nil {
		return cw.err
	}
	return cw.ctx.Err()
}

func (cw *CimLayerWriter) fail(err error) error {
	if cw.err == nil {
		cw.err = err
	}
	return err
}

// Add adds a file or directory with its metadata; for a file, fileSize bytes of data
// follow through Write. securityDescriptor, extendedAttributes (a
// FILE_FULL_EA_INFORMATION chain) and reparseData may be nil.
func (cw *CimLayerWriter) Add(name string, fileInfo *winfile.BasicInfo, fileSize int64, securityDescriptor []byte, extendedAttributes []byte, reparseData []byte) error {
	if err := cw.ready(); err != nil {
		return err
	}
	if fileInfo == nil {
		return cw.fail(fmt.Errorf("cim: Add %s: nil file information", name))
	}
	e := &winlayer.Entry{Name: toSlash(name), Info: *fileInfo, Size: fileSize, SecurityDescriptor: securityDescriptor, Reparse: reparseData}
	if e.IsDir() {
		e.Size = 0
	}
	if len(extendedAttributes) > 0 {
		eas, err := winfile.DecodeExtendedAttributes(extendedAttributes)
		if err != nil {
			return cw.fail(cw.entryErr("add", name, fmt.Errorf("extended attributes: %w", err)))
		}
		e.ExtendedAttributes = eas
	}
	clean, err := cw.v.Add(e)
	if err != nil {
		return cw.fail(cw.entryErr("add", name, err))
	}
	h := &cimfs.Header{Name: clean, Info: *fileInfo, Size: fileSize, SecurityDescriptor: securityDescriptor,
		ExtendedAttributes: extendedAttributes, ReparseData: reparseData}
	if h.Info.FileAttributes&winfile.AttrDirectory != 0 {
		h.Size = 0
	}
	if err := cw.w.Add(h); err != nil {
		return cw.fail(err)
	}
	cw.current = clean
	return nil
}

// AddAlternateStream starts the alternate data stream name, "<file>:<stream>" (with or
// without ":$DATA"), of the file added last; size bytes follow through Write.
func (cw *CimLayerWriter) AddAlternateStream(name string, size uint64) error {
	if err := cw.ready(); err != nil {
		return err
	}
	file, stream, ok := strings.Cut(toSlash(name), ":")
	if !ok {
		return cw.fail(fmt.Errorf("cim: AddAlternateStream %s: %w: no stream name", name, cimfs.ErrInvalidName))
	}
	if clean, err := winlayer.CleanName(file); err != nil || !strings.EqualFold(clean, cw.current) {
		return cw.fail(fmt.Errorf("cim: AddAlternateStream %s: not the file added last (%s)", name, cw.current))
	}
	if size > 1<<48 {
		return cw.fail(fmt.Errorf("cim: AddAlternateStream %s: %w", name, cimfs.ErrTooLarge))
	}
	if _, err := cw.v.AddStream(stream, int64(size)); err != nil {
		return cw.fail(cw.entryErr("stream", name, err))
	}
	if err := cw.w.AddStream(stream, int64(size)); err != nil {
		return cw.fail(err)
	}
	return nil
}

// AddLink adds name as a hard link to target, which must already exist in the layer
// or its parents.
func (cw *CimLayerWriter) AddLink(name string, target string) error {
	if err := cw.ready(); err != nil {
		return err
	}
	cw.current = ""
	cname, ctarget, err := cw.v.AddLink(toSlash(name), toSlash(target))
	if err != nil {
		return cw.fail(cw.entryErr("link", name, err))
	}
	if err := cw.w.AddLink(cname, ctarget); err != nil {
		return cw.fail(err)
	}
	return nil
}

// Remove removes name, present in a parent layer, from the layer.
func (cw *CimLayerWriter) Remove(name string) error {
	if err := cw.ready(); err != nil {
		return err
	}
	cw.current = ""
	cname, err := cw.v.Remove(toSlash(name))
	if err != nil {
		return cw.fail(cw.entryErr("remove", name, err))
	}
	if err := cw.w.Remove(cname); err != nil {
		return cw.fail(err)
	}
	return nil
}

// Write writes data of the current stream: the file added last, or the alternate
// stream started last.
func (cw *CimLayerWriter) Write(b []byte) (int, error) {
	if err := cw.ready(); err != nil {
		return 0, err
	}
	n, err := cw.w.Write(b)
	if err != nil {
		return n, cw.fail(err)
	}
	return n, nil
}

// Close commits the layer: after it succeeds the CIM is visible; on failure nothing
// of it is.
func (cw *CimLayerWriter) Close(ctx context.Context) error {
	if cw.closed {
		return ErrClosed
	}
	cw.closed = true
	err := cw.err
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cw.w.Abort()
		cw.removeDir()
		return err
	}
	if err := cw.w.Close(); err != nil {
		cw.removeDir()
		return err
	}
	return nil
}

// abort discards the layer.
func (cw *CimLayerWriter) abort() {
	if !cw.closed {
		cw.closed = true
		cw.w.Abort()
		cw.removeDir()
	}
}
