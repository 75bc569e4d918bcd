package ext4

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"github.com/hostcompute/hostcompute/pkg/tarstream"
)

// Result describes a built image.
type Result struct {
	// Size is the size of the file system in bytes (Blocks × 4096); the output file
	// has exactly this size after Build.
	Size int64 `json:"size"`
	// Blocks and FreeBlocks count 4096-byte blocks.
	Blocks     uint32 `json:"blocks"`
	FreeBlocks uint32 `json:"freeBlocks"`
	// Inodes and FreeInodes count inodes; Inodes - FreeInodes includes the ten
	// reserved ones.
	Inodes         uint32 `json:"inodes"`
	FreeInodes     uint32 `json:"freeInodes"`
	Groups         uint32 `json:"groups"`
	InodesPerGroup uint32 `json:"inodesPerGroup"`
	// UUID is the file system UUID: derived from the image's content in native mode,
	// zero in compatibility mode (as compactext4 writes it).
	UUID [16]byte `json:"-"`
}

type options struct {
	compat           bool
	inlineData       bool
	convertWhiteouts bool
	convertBackslash bool
	maxDiskSize      int64
	maxFileSize      int64
	observer         WriteObserver
}

// Option changes how Build works.
type Option func(*options) error

// WithInlineData stores regular files of up to 136 bytes inside their inode
// (the inline_data feature), as tar2ext4 -inline does. Such images cannot be used
// with DAX.
func WithInlineData() Option {
	return func(o *options) error { o.inlineData = true; return nil }
}

// WithConvertWhiteouts turns OCI whiteouts into overlayfs ones, as tar2ext4 -overlay
// does: ".wh.NAME" becomes a character device 0:0 named NAME (mode 0, owner 0:0, times
// 0) and ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory. In native mode
// a whiteout replaces whatever the same layer put at NAME before it.
func WithConvertWhiteouts() Option {
	return func(o *options) error { o.convertWhiteouts = true; return nil }
}

// WithConvertBackslash replaces every '\' with '/' in entry and link names, for tars
// written on Windows (tar2ext4 -convert-slash).
func WithConvertBackslash() Option {
	return func(o *options) error { o.convertBackslash = true; return nil }
}

// WithMaximumDiskSize caps the image at size bytes and reserves group descriptor
// blocks for that size, as tar2ext4's MaximumDiskSize: 0 means 16 GiB, a negative size
// or one above 16 TiB means 16 TiB, others are rounded up to 4096. The reservation
// changes every later offset, so images (and dm-verity root hashes) only compare equal
// when built with the same maximum.
func WithMaximumDiskSize(size int64) Option {
	return func(o *options) error {
		switch {
		case size < 0 || size > maxMaxDiskSize:
			o.maxDiskSize = maxMaxDiskSize
		case size == 0:
			o.maxDiskSize = defaultMaxDiskSize
		default:
			o.maxDiskSize = (size + blockSize - 1) &^ (blockSize - 1)
		}
		return nil
	}
}

// WithMaximumFileSize refuses regular files larger than size bytes with ErrTooLarge.
// The default and upper bound is 128 GiB, compactext4's limit. The size counts holes:
// the tar reader hands them over as zeros, so a sparse file of size n costs reading n
// bytes of zeros even though none is written.
func WithMaximumFileSize(size int64) Option {
	return func(o *options) error {
		if size < 0 {
			return fmt.Errorf("negative maximum file size %d", size)
		}
		o.maxFileSize = min(size, compatMaxFile)
		return nil
	}
}

// WithHcsshimCompat makes the output byte-identical to hcsshim v0.13.0's tar2ext4 for
// the same tar and options, defects included: inode bitmap padding left clear
// (e2fsck -fn reports it), zero UUID, implied directories copying their parent's
// attributes, dense sparse files, compactext4's order of block attributes and its
// refusals (a second copy of a file with data, a file over a directory, ...). Use it
// when a dm-verity root hash must match one computed by hcsshim's tooling.
func WithHcsshimCompat() Option {
	return func(o *options) error { o.compat = true; return nil }
}

// WriteObserver is told of the bytes Build writes to the image, for a caller that
// digests the image while it is built (such as pkg/dmverity's Level0) instead of
// reading it back afterwards. Its methods are called on Build's goroutine.
type WriteObserver interface {
	// Written is called with the regions the image's sequential writer stores, at
	// increasing offsets; bytes never passed to Written read as zeros (holes of the
	// output, which Build truncates to 0 first). b is only valid during the call.
	Written(off int64, b []byte)
	// Rewritten is called when n bytes at off are stored again after Written was
	// called for them or for bytes after them (the superblock, group descriptors,
	// attribute blocks and freed blocks are patched this way).
	Rewritten(off, n int64)
}

// WithWriteObserver passes every write of the image to obs (see WriteObserver). The
// observer sees the bytes of a successful Build up to its Result.Size; after a
// failure what it saw is meaningless.
func WithWriteObserver(obs WriteObserver) Option {
	return func(o *options) error { o.observer = obs; return nil }
}

// Build writes an ext4 image of the tar stream r to out, in one pass over r. File data
// goes straight to its final place; memory grows with the number of entries only.
//
// The output is truncated to 0 first. On failure Build truncates it to 0 again and
// returns an *Error naming the entry and its offset in the tar stream.
func Build(ctx context.Context, out Output, r io.Reader, opts ...Option) (*Result, error) {
	o := options{maxDiskSize: defaultMaxDiskSize, maxFileSize: compatMaxFile}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, &Error{Op: "option", Offset: -1, Err: err}
		}
	}
	if err := out.Truncate(0); err != nil {
		return nil, &Error{Op: "truncate output", Offset: -1, Err: err}
	}
	res, err := build(ctx, out, r, &o)
	if err != nil {
		_ = out.Truncate(0)
		return nil, err
	}
	return res, nil
}

func build(ctx context.Context, out Output, r io.Reader, o *options) (*Result, error) {
	w, err := newWriter(out, o)
	if err != nil {
		return nil, &Error{Op: "start", Offset: -1, Err: err}
	}
	defer func() { w.ob.wb.stop() }() // after a failure; close stops it on success
	// The project's own header codec (entries and errors as archive/tar's,
	// differentially fuzzed), which knows each header's offset.
	tr := tarstream.NewReader(r)
	w.rules = ocilayer.NewValidator(ocilayer.WithoutBase(), ocilayer.WithFileSizeLimit(o.maxFileSize))
	for {
		if err := ctx.Err(); err != nil {
			return nil, &Error{Op: "read", Offset: tr.Offset(), Err: err}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		off := tr.Offset()
		if err != nil {
			return nil, &Error{Op: "read header", Offset: off, Err: fmt.Errorf("%w: %w", ErrInvalidTar, tarstream.Cause(err))}
		}
		if err := w.add(ctx, hdr, tr.Plain(), o); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, &Error{Op: "add", Entry: hdr.Name, Offset: off, Err: err}
		}
	}
	res, err := w.close(ctx)
	if err != nil {
		return nil, &Error{Op: "finish image", Offset: -1, Err: err}
	}
	return res, nil
}

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
	paxXattr       = "SCHILY.xattr."
)

// entryAttrs maps a tar header to inode attributes; mode gets typ as its type.
func entryAttrs(hdr *tar.Header, typ uint16, link string, compat bool) *attrs {
	t := func(tm interface {
		Unix() int64
		Nanosecond() int
		IsZero() bool
	}) uint64 {
		if compat {
			return fsTime(tm.Unix(), int64(tm.Nanosecond()), tm.IsZero())
		}
		return fsTimeNative(tm.Unix(), int64(tm.Nanosecond()), tm.IsZero())
	}
	a := &attrs{
		mode:     uint16(hdr.Mode)&^typeMask | typ,
		uid:      uint32(hdr.Uid),
		gid:      uint32(hdr.Gid),
		atime:    t(hdr.AccessTime),
		mtime:    t(hdr.ModTime),
		ctime:    t(hdr.ChangeTime),
		crtime:   t(hdr.ModTime),
		size:     hdr.Size,
		linkname: link,
		devmajor: uint32(hdr.Devmajor),
		devminor: uint32(hdr.Devminor),
		xattrs:   make(map[string][]byte),
	}
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			a.xattrs[k[len(paxXattr):]] = []byte(v)
		}
	}
	return a
}

func (w *writer) add(ctx context.Context, hdr *tar.Header, data io.Reader, o *options) error {
	name, link := hdr.Name, hdr.Linkname
	if o.convertBackslash {
		name = strings.ReplaceAll(name, `\`, "/")
		link = strings.ReplaceAll(link, `\`, "/")
	}
	// The rules of a Linux layer are those of every path into one (pkg/ocilayer).
	e := ocilayer.EntryFromHeader(hdr)
	e.Name, e.Linkname = name, link
	c, err := w.rules.Check(&e)
	if err != nil {
		return ruleError{err}
	}
	// AUFS bookkeeping has no overlayfs form, and archive metadata is no file. The one
	// exception is compat mode, whose job is hcsshim's bytes: hcsshim stores a PAX
	// global header as a file named after it.
	if c.Action == ocilayer.Ignore && (e.Type == ocilayer.TypeGlobal && !w.compat || e.Type != ocilayer.TypeGlobal && o.convertWhiteouts) {
		return nil
	}
	if w.compat {
		return w.addCompat(ctx, hdr, name, link, data, o)
	}
	return w.addNative(ctx, hdr, name, link, data, o)
}

// ruleError is a refusal of the layer rules: it matches both the ocilayer class and
// the corresponding class of this package.
type ruleError struct{ err error }

func (e ruleError) Error() string { return e.err.Error() }

func (e ruleError) Unwrap() []error {
	var own error = ErrInvalidTar
	switch {
	case errors.Is(e.err, ocilayer.ErrInsecurePath):
		own = ErrInsecurePath
	case errors.Is(e.err, ocilayer.ErrNotDir):
		own = ErrNotDir
	case errors.Is(e.err, ocilayer.ErrLinkTarget):
		own = ErrLinkTarget
	case errors.Is(e.err, ocilayer.ErrTooLarge):
		own = ErrTooLarge
	case errors.Is(e.err, ocilayer.ErrUnsupported):
		own = ErrUnsupported
	}
	return []error{e.err, own}
}

// FileSystemSize reads the size in bytes of the ext4 file system at the start of r from
// its superblock, for example to find the end of the file system in a VHD with a
// dm-verity tree after it.
func FileSystemSize(r io.ReaderAt) (int64, error) {
	var sb [1024]byte
	if _, err := r.ReadAt(sb[:], superBlockOffset); err != nil {
		return 0, fmt.Errorf("ext4: reading superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[56:]) != superBlockMagic {
		return 0, fmt.Errorf("ext4: no ext4 superblock at offset %d", superBlockOffset)
	}
	logBlock := binary.LittleEndian.Uint32(sb[24:])
	if logBlock > 6 {
		return 0, fmt.Errorf("ext4: invalid block size in superblock")
	}
	blocks := int64(binary.LittleEndian.Uint32(sb[4:])) | int64(binary.LittleEndian.Uint32(sb[336:]))<<32
	return blocks * (1024 << logBlock), nil
}

// splitFirst splits a path at its first slash.
func splitFirst(p string) (string, string) {
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return p, ""
}
