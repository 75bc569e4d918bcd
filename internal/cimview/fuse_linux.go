package cimview

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

func init() {
	fusefs.Register(Kind, openFS)
}

func openFS(req fusefs.Request) (*fusefs.FS, error) {
	im, err := cimfs.Open(req.Source)
	if err != nil {
		return nil, err
	}
	root, err := NewRoot(New(im))
	if err != nil {
		im.Close()
		return nil, err
	}
	return &fusefs.FS{
		Root:    root,
		Close:   im.Close,
		WrapRaw: func(raw fuse.RawFileSystem) fuse.RawFileSystem { return noOpendir{raw} },
		Options: func(o *gofs.Options) {
			o.RootStableAttr = &gofs.StableAttr{Ino: 1, Mode: fuse.S_IFDIR}
			// Reads of large files come in big requests, many at once.
			o.MaxReadAhead = 1 << 20
			o.MaxBackground = 64
		},
	}, nil
}

// NewRoot returns the go-fuse root node of v.
func NewRoot(v *View) (gofs.InodeEmbedder, error) {
	n, err := v.Root()
	if err != nil {
		return nil, err
	}
	return &node{v: v, n: n}, nil
}

// node is a go-fuse node over a view node.
type node struct {
	gofs.Inode
	v *View
	n *Node
}

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeReaddirer      = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeStatxer        = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeFlusher        = (*node)(nil)
	_ gofs.NodeReader         = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
)

// maxLoggedErrors bounds the helper's log when a reader keeps hitting a
// corrupt part of an image.
const maxLoggedErrors = 1000

var loggedErrors atomic.Int64

// errno maps err and logs what is not a plain "no such file": the helper's
// log is where a corrupt image's details go.
func (nd *node) errno(op string, err error) syscall.Errno {
	e := Errno(err)
	if e == syscall.EIO {
		switch n := loggedErrors.Add(1); {
		case n < maxLoggedErrors:
			fmt.Fprintf(os.Stderr, "cimview: %s %s: %v\n", op, nd.n.Path, err)
		case n == maxLoggedErrors:
			fmt.Fprintf(os.Stderr, "cimview: %d errors; no more are logged\n", n)
		}
	}
	return e
}

func (nd *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, err := nd.v.Lookup(nd.n, name)
	if err != nil {
		return nil, nd.errno("lookup "+name+" in", err)
	}
	a := nd.v.Attr(ch)
	fillAttr(&out.Attr, &a)
	return nd.NewInode(ctx, &node{v: nd.v, n: ch}, gofs.StableAttr{Mode: a.Mode & ModeType, Ino: a.Ino}), 0
}

func (nd *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ents, err := nd.v.ReadDir(nd.n)
	if err != nil {
		return nil, nd.errno("readdir", err)
	}
	list := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		list[i] = fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode}
	}
	return gofs.NewListDirStream(list), 0
}

// OpendirHandle lets the kernel cache the directory's listing
// (FOPEN_CACHE_DIR): the image never changes, so later listings need neither
// READDIR requests nor the lookups of READDIRPLUS. The listing is made only
// when the kernel asks for it, which it does not while its cache holds it.
func (nd *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{nd: nd}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is an open directory whose listing is made on first use.
type dirHandle struct {
	nd *node
	ds gofs.DirStream
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileReleasedirer = (*dirHandle)(nil)
)

func (d *dirHandle) list(ctx context.Context) syscall.Errno {
	if d.ds != nil {
		return 0
	}
	ds, errno := d.nd.Readdir(ctx)
	if errno == 0 {
		d.ds = ds
	}
	return errno
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.list(ctx); errno != 0 {
		return nil, errno
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.list(ctx); errno != 0 {
		return errno
	}
	return d.ds.(gofs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

func fillAttr(out *fuse.Attr, a *Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Size = uint64(a.Size)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 1 << 17
	out.Nlink = a.Nlink
	out.Atime, out.Atimensec = unixTime(a.Atime)
	out.Mtime, out.Mtimensec = unixTime(a.Mtime)
	out.Ctime, out.Ctimensec = unixTime(a.Ctime)
}

// unixTime converts a FILETIME to seconds and nanoseconds since 1970; times
// before 1970 give negative seconds in two's complement, as the kernel reads
// them.
func unixTime(ft winfile.Filetime) (uint64, uint32) {
	t := ft.Time()
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

func (nd *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a := nd.v.Attr(nd.n)
	fillAttr(&out.Attr, &a)
	return 0
}

func (nd *node) Statx(ctx context.Context, fh gofs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	a := nd.v.Attr(nd.n)
	var at fuse.Attr
	fillAttr(&at, &a)
	out.Mask = statxBasic | statxBtime
	out.Blksize = at.Blksize
	out.Nlink = at.Nlink
	out.Mode = uint16(at.Mode)
	out.Ino = at.Ino
	out.Size = at.Size
	out.Blocks = at.Blocks
	out.Atime = fuse.SxTime{Sec: at.Atime, Nsec: at.Atimensec}
	out.Mtime = fuse.SxTime{Sec: at.Mtime, Nsec: at.Mtimensec}
	out.Ctime = fuse.SxTime{Sec: at.Ctime, Nsec: at.Ctimensec}
	s, ns := unixTime(a.Btime)
	out.Btime = fuse.SxTime{Sec: s, Nsec: ns}
	return 0
}

// statx mask bits (linux/stat.h).
const (
	statxBasic = 0x7ff // STATX_BASIC_STATS
	statxBtime = 0x800 // STATX_BTIME
)

func (nd *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	if err := nd.v.Open(nd.n); err != nil {
		return nil, 0, nd.errno("open", err)
	}
	// ENOSYS tells the kernel that opens need no server (FUSE's no_open): it
	// stops sending OPEN and RELEASE for every file and keeps their pages
	// cached (FOPEN_KEEP_CACHE is the default then). Reads still come here and
	// report a file that cannot be read. The mount is read-only, so the kernel
	// refuses opens for writing itself.
	return nil, 0, syscall.ENOSYS
}

// Flush answers ENOSYS once, so that the kernel stops sending a FLUSH for
// every close: nothing is ever written.
func (nd *node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

func (nd *node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, base, ok := nd.v.Extent(nd.n); ok {
		if f, ok := r.(*os.File); ok {
			// The bytes lie as they read in the region file: let the kernel
			// splice them to the reader without copying them through here.
			size := nd.v.Size(nd.n)
			if off < 0 || off >= size {
				return fuse.ReadResultData(nil), 0
			}
			return fuse.ReadResultFd(f.Fd(), base+off, int(min(int64(len(dest)), size-off))), 0
		}
	}
	k, err := nd.v.ReadAt(nd.n, dest, off)
	if err != nil {
		return nil, nd.errno("read", err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (nd *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := nd.v.Readlink(nd.n)
	if err != nil {
		return nil, nd.errno("readlink", err)
	}
	return []byte(t), 0
}

func (nd *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var size int
	var names []string
	if !nd.n.IsSymlink() {
		// Linux refuses user.* attributes of symlinks (ENODATA), so none are
		// listed.
		names = nd.v.ListXattr(nd.n)
	}
	for _, s := range names {
		size += len(s) + 1
	}
	if len(dest) == 0 {
		return uint32(size), 0
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	p := dest[:0]
	for _, s := range names {
		p = append(append(p, s...), 0)
	}
	return uint32(size), 0
}

func (nd *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	val, err := nd.v.GetXattr(nd.n, attr)
	if big, ok := err.(*StreamTooLargeError); ok {
		// The size is reported; the value cannot be returned (the kernel turns
		// ERANGE at its 64 KiB limit into E2BIG).
		if len(dest) == 0 {
			return uint32(min(big.Size, 1<<32-1)), 0
		}
		return uint32(min(big.Size, 1<<32-1)), syscall.ERANGE
	}
	if err != nil {
		return 0, nd.errno("getxattr "+attr+" of", err)
	}
	if len(dest) == 0 {
		return uint32(len(val)), 0
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

func (nd *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	usage, _ := nd.v.im.Usage()
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = uint64(usage+4095) / 4096
	out.Files = uint64(nd.v.Files())
	out.NameLen = 255
	return 0
}

// noOpendir answers OPENDIR with ENOSYS, FUSE's "no opendir" mode: the kernel
// then opens directories without asking, sends no RELEASEDIR, and caches their
// listings (FOPEN_CACHE_DIR is the default then), so a walk of a tree already
// listed never reaches the server. The READDIR requests that do come carry no
// handle; each is answered through a handle opened and released for it alone
// (go-fuse keeps listings per handle, and seeks to the request's offset).
type noOpendir struct{ fuse.RawFileSystem }

func (r noOpendir) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (r noOpendir) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readDir(cancel, in, out, false)
}

func (r noOpendir) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readDir(cancel, in, out, true)
}

func (r noOpendir) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	rin := *in
	if in.Fh == 0 {
		var oo fuse.OpenOut
		if st := r.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &oo); !st.Ok() {
			return st
		}
		rin.Fh = oo.Fh
		defer r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oo.Fh})
	}
	if plus {
		return r.RawFileSystem.ReadDirPlus(cancel, &rin, out)
	}
	return r.RawFileSystem.ReadDir(cancel, &rin, out)
}

func (r noOpendir) ReleaseDir(in *fuse.ReleaseIn) {
	if in.Fh != 0 {
		r.RawFileSystem.ReleaseDir(in)
	}
}
