package attach

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// RawViewKind is the fusefs kind of the raw block view: a directory with one
// file, RawViewFile, whose content is the virtual disk of the source.
const RawViewKind = "vhd-raw"

// RawViewFile is the name of the file in a raw view.
const RawViewFile = "disk"

func init() {
	fusefs.Register(RawViewKind, openRawView)
}

func openRawView(req fusefs.Request) (*fusefs.FS, error) {
	d, err := OpenDisk(req.Source, req.ReadOnly)
	if err != nil {
		return nil, err
	}
	root := &gofs.Inode{}
	file := &rawFile{disk: d, readOnly: req.ReadOnly}
	if b, ok := d.(batcher); ok && !req.ReadOnly {
		// The view is a disk with a write cache: the kernel flushes it
		// (fsync of the device, a file system's journal commits, detach),
		// and new blocks' metadata is written then, after their data is
		// synced, instead of a sync on each allocation.
		b.BatchAllocations()
	}
	closeAll := d.Close
	if e, ok := d.(extenter); ok {
		// Reads of allocated blocks are spliced from the disk file by the
		// kernel; a descriptor of our own, as the disk's is not exported.
		src, err := os.Open(req.Source)
		if err != nil {
			d.Close()
			return nil, err
		}
		file.ext, file.src = e, src
		closeAll = func() error { return errors.Join(d.Close(), src.Close()) }
	}
	return &fusefs.FS{
		Root: root,
		// Close runs once the kernel has unmounted the view, so nothing writes
		// after it.
		Close: closeAll,
		Options: func(o *gofs.Options) {
			// The loop device over the view does direct I/O and splits a
			// large request into several (its segment limit); with async
			// direct I/O the kernel sends them to us together rather than
			// one after the other.
			o.MountOptions.ExtraCapabilities |= fuse.CAP_ASYNC_DIO
			o.OnAdd = func(ctx context.Context) {
				root.AddChild(RawViewFile, root.NewPersistentInode(ctx, file, gofs.StableAttr{Ino: 2}), false)
			}
		},
	}, nil
}

// batcher is a disk that can defer the metadata of new blocks to Flush
// (*vhd.Disk).
type batcher interface{ BatchAllocations() }

// extenter is a disk that tells where its bytes lie in its file (*vhd.Disk).
type extenter interface {
	FileExtent(off, n int64) (fileOff, length int64, ok bool)
}

// rawFile is the file of a raw view. Reads and writes go straight to the
// disk, which serialises them itself; reads of allocated blocks of a VHDX
// go from the disk's file to the kernel by splice.
type rawFile struct {
	gofs.Inode
	disk     Disk
	readOnly bool
	ext      extenter // nil unless the disk has extents
	src      *os.File // the disk file, read-only, with ext

	flushMu sync.Mutex // one Flush at a time
}

var (
	_ gofs.NodeGetattrer = (*rawFile)(nil)
	_ gofs.NodeSetattrer = (*rawFile)(nil)
	_ gofs.NodeOpener    = (*rawFile)(nil)
	_ gofs.NodeReader    = (*rawFile)(nil)
	_ gofs.NodeWriter    = (*rawFile)(nil)
	_ gofs.NodeFsyncer   = (*rawFile)(nil)
	_ gofs.NodeReleaser  = (*rawFile)(nil)
)

func (f *rawFile) mode() uint32 {
	if f.readOnly {
		return syscall.S_IFREG | 0o444
	}
	return syscall.S_IFREG | 0o644
}

func (f *rawFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = f.mode()
	out.Size = uint64(f.disk.Size())
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	out.Nlink = 1
	return 0
}

// Setattr accepts a larger size, which grows the virtual disk when its
// format can be resized (EOPNOTSUPP otherwise), and nothing else that
// changes anything: a disk never shrinks through the view.
func (f *rawFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != f.disk.Size() {
		if f.readOnly {
			return syscall.EROFS
		}
		if int64(sz) < f.disk.Size() {
			return syscall.EPERM
		}
		r, ok := f.disk.(resizer)
		if !ok {
			return syscall.EOPNOTSUPP
		}
		if err := r.Resize(int64(sz)); err != nil {
			if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, vhd.ErrUnsupported) {
				return syscall.EOPNOTSUPP // a differencing VHD keeps its parent's size
			}
			return errnoOf(err)
		}
	}
	if _, ok := in.GetMode(); ok {
		return syscall.EPERM
	}
	if _, ok := in.GetUID(); ok {
		return syscall.EPERM
	}
	return f.Getattr(ctx, fh, out)
}

func (f *rawFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if f.readOnly && flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	if flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EPERM
	}
	// The content changes only through this mount: keep the page cache.
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *rawFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := f.disk.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	if rem := size - off; int64(len(dest)) > rem {
		dest = dest[:rem]
	}
	// go-fuse splices a range into the reply through a pipe that holds the
	// reply header, the data and a page; larger reads are copied (go-fuse
	// would try, fail and log each time).
	if f.ext != nil && len(dest)+2*os.Getpagesize() <= splice.MaxPipeSize() {
		if fileOff, n, ok := f.ext.FileExtent(off, int64(len(dest))); ok && n == int64(len(dest)) {
			// go-fuse preads the range into dest if splice fails.
			return fuse.ReadResultFd(f.src.Fd(), fileOff, len(dest)), 0
		}
	}
	n, err := f.disk.ReadAt(dest, off)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(dest)) {
		return nil, gofs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *rawFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if f.readOnly {
		return 0, syscall.EROFS
	}
	if off < 0 || off+int64(len(data)) > f.disk.Size() {
		return 0, syscall.ENOSPC
	}
	n, err := f.disk.WriteAt(data, off)
	if err != nil {
		return uint32(n), errnoOf(err)
	}
	return uint32(n), 0
}

func (f *rawFile) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return f.flush()
}

// Release flushes when the last opener (the loop device, at detach) closes.
func (f *rawFile) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return f.flush()
}

func (f *rawFile) flush() syscall.Errno {
	if f.readOnly {
		return 0
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	if err := f.disk.Flush(); err != nil {
		return errnoOf(err)
	}
	return 0
}

// errnoOf maps an error from package vhd to an errno the kernel passes on:
// the system error if there is one, else EIO.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}
