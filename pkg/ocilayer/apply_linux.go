package ocilayer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/internal/filejobs"
	"github.com/hostcompute/hostcompute/pkg/internal/writeback"
	"github.com/hostcompute/hostcompute/pkg/tarstream"
)

const (
	// copyBufferSize bounds the buffer file data goes through: most files of a
	// layer fit and reach the page cache in one write(2).
	copyBufferSize = 1 << 20
	// maxCachedDirs bounds the directory descriptors kept open between entries.
	maxCachedDirs = 256
)

// Apply applies the uncompressed OCI layer tar read from r onto the directory
// root and returns the number of bytes of file data written. See the package
// documentation for the rules; every failure tied to an entry is an *EntryError.
// Apply stops at the first error and leaves root partly applied; callers that
// need atomicity apply into a staging directory. Cancelling ctx stops Apply
// between entries and between buffers of file data.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOption) (int64, error) {
	var o applyOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return 0, err
		}
	}
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rootfd)
	vopts := []ValidatorOption{}
	if o.maxFileSize > 0 {
		vopts = append(vopts, WithFileSizeLimit(o.maxFileSize))
	}
	if o.standalone {
		vopts = append(vopts, WithoutBase())
	}
	a := &applier{
		ctx:   ctx,
		root:  rootfd,
		v:     NewValidator(vopts...),
		opts:  o,
		added: make(map[string]struct{}),
		dirAt: make(map[string]int),
		open:  make(map[string]int),
	}
	if emptyDir(root) {
		// Nothing is there but what this layer adds, so a file whose name
		// the layer has not given before cannot exist: small ones are made
		// by workers (see package filejobs).
		a.files = filejobs.New()
	}
	defer func() {
		if a.files != nil {
			a.files.Stop(true) // after a failure; finish has stopped it otherwise
		}
		a.dropDirs()
	}()
	// The project's own header codec (entries and errors as archive/tar's,
	// differentially fuzzed), which knows each header's offset.
	tr := tarstream.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return a.written, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		off := tr.Offset()
		if err != nil {
			return a.written, &EntryError{Offset: off, Op: "read", Err: tarstream.Cause(err)}
		}
		if a.files != nil {
			if err := a.files.Failure(); err != nil {
				return a.written, err // it names its own entry
			}
		}
		if len(a.open) >= maxCachedDirs {
			if err := a.dropDirs(); err != nil { // between entries, where no descriptor of it is in use
				return a.written, err
			}
		}
		a.off = off
		if err := a.entry(hdr, tr.Plain()); err != nil {
			var we workerError
			if errors.As(err, &we) {
				return a.written, we.err // it names its own entry
			}
			var ee *EntryError
			if !errors.As(err, &ee) {
				ee = &EntryError{Err: err}
			}
			ee.Entry, ee.Offset = hdr.Name, off
			return a.written, ee
		}
	}
	if err := a.finish(); err != nil {
		return a.written, err
	}
	return a.written, nil
}

// applier holds the state of one Apply call.
type applier struct {
	ctx     context.Context
	root    int // directory fd every path is resolved under
	v       *Validator
	opts    applyOptions
	buf     []byte // reused for all file data, grown up to copyBufferSize
	written int64
	// added holds the cleaned names of this layer's entries and their ancestors;
	// an opaque marker keeps exactly these.
	added map[string]struct{}
	// dirs are the directories whose times are set at the end, in entry order;
	// dirAt indexes them by name so that a later duplicate wins.
	dirs  []dirTimes
	dirAt map[string]int
	// open caches descriptors of directories by cleaned name, each resolved
	// under root as openDir does, so that the entries of one directory share
	// one lookup. Any removal empties it (see dropDirs): a removed or replaced
	// directory, or a symlink on the way to one, must be resolved again.
	open map[string]int
	// files makes small regular files on worker goroutines (nil: all here);
	// they use descriptors of open, which dropDirs closes only once they are
	// done.
	files *filejobs.Pool
	off   int64 // the current entry's offset, for errors of its file
}

// workerError is a failure of a file made by a worker, reported when the
// applier waited for it: it names its own entry, not the current one.
type workerError struct{ err error }

func (e workerError) Error() string { return e.err.Error() }
func (e workerError) Unwrap() error { return e.err }

// waitFiles waits until the workers have made the files handed to them: before
// anything that looks at or changes files already written, or closes the
// descriptors they use.
func (a *applier) waitFiles() error {
	if a.files == nil {
		return nil
	}
	if err := a.files.Wait(); err != nil {
		return workerError{err}
	}
	return nil
}

// emptyDir reports whether dir holds nothing.
func emptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && err == io.EOF
}

type dirTimes struct {
	name string
	ts   [2]unix.Timespec
}

func opError(op string, err error) error { return &EntryError{Op: op, Err: err} }

// splitPath splits a cleaned name into its parent directory and final element.
func splitPath(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

func joinPath(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

// openDir opens directory dir resolved inside root: absolute symlinks and ".."
// met on the way stay within root, and magic links are refused. With create,
// missing directories are made (mode 0755, as tar implementations do for
// parents an archive does not list).
func (a *applier) openDir(dir string, create bool, flags uint64) (int, error) {
	how := &unix.OpenHow{
		Flags:   flags | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(a.root, dir, how)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err == unix.ENOENT && create && dir != ".":
			// A file a worker has yet to make may be on the way: wait, so
			// that the directory is made (or refused) as it would be here.
			if err := a.waitFiles(); err != nil {
				return -1, err
			}
			if fd, err := unix.Openat2(a.root, dir, how); err == nil {
				return fd, nil
			}
			if err := a.mkdirAll(dir); err != nil {
				return -1, err
			}
			create = false
			continue
		case err != nil:
			return -1, fmt.Errorf("opening directory %q: %w", dir, err)
		}
		return fd, nil
	}
}

// parentDir returns a descriptor of directory dir resolved inside root, from
// the cache when it is there. Callers hand it back with release.
func (a *applier) parentDir(dir string, create bool) (int, error) {
	if dir == "." {
		return a.root, nil
	}
	if fd, ok := a.open[dir]; ok {
		return fd, nil
	}
	fd, err := a.openDir(dir, create, unix.O_PATH)
	if err != nil {
		return -1, err
	}
	a.cacheDir(dir, fd)
	return fd, nil
}

// cacheDir keeps fd as the descriptor of dir unless one is kept already. The
// cache is emptied between entries once it holds maxCachedDirs.
func (a *applier) cacheDir(dir string, fd int) {
	if _, ok := a.open[dir]; !ok {
		a.open[dir] = fd
	}
}

// release closes fd, a descriptor of dir from parentDir, unless the cache
// holds it.
func (a *applier) release(dir string, fd int) {
	if fd == a.root {
		return
	}
	if c, ok := a.open[dir]; ok && c == fd {
		return
	}
	unix.Close(fd)
}

// dropDirs empties the directory cache, closing its descriptors except those
// in keep, which their holders still use and close with release. The workers'
// files are made first: they use these descriptors.
func (a *applier) dropDirs(keep ...int) error {
	err := a.waitFiles()
	for _, fd := range a.open {
		if !slices.Contains(keep, fd) {
			unix.Close(fd)
		}
	}
	clear(a.open)
	return err
}

// removeAt removes name in the directory pfd and everything below it. hold
// are the cached descriptors the caller still uses.
func (a *applier) removeAt(pfd int, name string, hold ...int) error {
	if err := a.dropDirs(append(hold, pfd)...); err != nil {
		return err
	}
	return removeAllAt(pfd, name)
}

// create runs mk, which makes pfd/base with O_EXCL semantics; when something
// is already there it removes that and runs mk once more. Later entries thus
// replace earlier ones without a lookup before every creation.
func (a *applier) create(pfd int, base string, mk func() error) error {
	err := mk()
	if err != unix.EEXIST {
		return err
	}
	if err := a.removeAt(pfd, base); err != nil {
		return opError("remove", err)
	}
	return mk()
}

func (a *applier) mkdirAll(dir string) error {
	parent, base := splitPath(dir)
	pfd, err := a.parentDir(parent, true)
	if err != nil {
		return err
	}
	defer a.release(parent, pfd)
	switch err := unix.Mkdirat(pfd, base, 0o755); err {
	case nil:
		a.markAdded(dir)
		return nil
	case unix.EEXIST:
		// Something is there; opening it again reports what is wrong with it.
		return nil
	default:
		return fmt.Errorf("making directory %q: %w", dir, err)
	}
}

func (a *applier) markAdded(name string) {
	for p := name; p != "."; p = path.Dir(p) {
		if _, ok := a.added[p]; ok {
			return
		}
		a.added[p] = struct{}{}
	}
}

func (a *applier) entry(hdr *tar.Header, body io.Reader) error {
	e := EntryFromHeader(hdr)
	c, err := a.v.Check(&e)
	if err != nil {
		return err
	}
	switch c.Action {
	case Ignore:
		return nil
	case Whiteout:
		return a.whiteout(c.Target)
	case Opaque:
		return a.opaque(c.Target)
	}
	name := c.Name
	if name == "." {
		return a.dirMeta(a.root, ".", hdr)
	}
	dir, base := splitPath(name)

	_, again := a.added[name]
	if again {
		// What this layer made under the name before may be a worker's.
		if err := a.waitFiles(); err != nil {
			return err
		}
	}
	pfd, err := a.parentDir(dir, true)
	if err != nil {
		return err
	}
	defer func() { a.release(dir, pfd) }()
	a.markAdded(name)

	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.directory(pfd, name, base, hdr)
	case tar.TypeLink:
		// The target may be a file a worker is making.
		if err := a.waitFiles(); err != nil {
			return err
		}
		return a.hardlink(pfd, base, c.Target, hdr.Linkname)
	case tar.TypeReg, tar.TypeRegA:
		if a.files != nil && !again && !e.Sparse && hdr.Size <= filejobs.MaxSize {
			return a.regularAsync(pfd, base, mode, hdr, body)
		}
		return a.regular(pfd, base, mode, hdr, e.Sparse, body)
	case tar.TypeCont, tar.TypeGNUSparse:
		return a.regular(pfd, base, mode, hdr, e.Sparse, body)
	case tar.TypeSymlink:
		if err := a.create(pfd, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
			return opError("symlink", err)
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := uint32(unix.S_IFIFO)
		dev := 0
		if hdr.Typeflag != tar.TypeFifo {
			kind = unix.S_IFCHR
			if hdr.Typeflag == tar.TypeBlock {
				kind = unix.S_IFBLK
			}
			if hdr.Devmajor < 0 || hdr.Devminor < 0 {
				return fmt.Errorf("%w: negative device number", ErrInvalidEntry)
			}
			dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		}
		if err := a.create(pfd, base, func() error { return unix.Mknodat(pfd, base, kind|mode, dev) }); err != nil {
			if err == unix.EPERM && kind != unix.S_IFIFO {
				if a.opts.skipDevices {
					return nil
				}
				return opError("mknod", fmt.Errorf("%w: creating a device: %w (WithSkipDevices skips these)", ErrUnsupported, err))
			}
			return opError("mknod", err)
		}
	}
	return a.meta(pfd, base, hdr.Typeflag == tar.TypeSymlink, mode, hdr)
}

// directory makes pfd/base a directory, keeping one already there, applies
// the entry's metadata and keeps its descriptor for the entries below it.
func (a *applier) directory(pfd int, name, base string, hdr *tar.Header) error {
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
		return opError("mkdir", err)
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0)
	if err == unix.ENOTDIR || err == unix.ELOOP {
		// Not a directory (a symlink is not followed): replace it.
		if err := a.removeAt(pfd, base); err != nil {
			return opError("remove", err)
		}
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return opError("mkdir", err)
		}
		fd, err = unix.Openat(pfd, base, flags, 0)
	}
	if err != nil {
		return opError("open", err)
	}
	if err := a.dirMeta(fd, name, hdr); err != nil {
		unix.Close(fd)
		return err
	}
	// pfd/base, base being neither a symlink nor "..", is where name resolves.
	a.cacheDir(name, fd)
	a.release(name, fd)
	return nil
}

func (a *applier) regular(pfd int, base string, mode uint32, hdr *tar.Header, sparse bool, body io.Reader) error {
	var fd int
	err := a.create(pfd, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return opError("create", err)
	}
	fill := a.fill
	if sparse {
		fill = a.fillSparse
	}
	if err := fill(fd, hdr.Size, body); err != nil {
		unix.Close(fd)
		return err
	}
	if err := a.fdMeta(fd, mode, hdr); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Close(fd); err != nil {
		return opError("close", err)
	}
	return nil
}

// regularAsync reads a small file's data and hands the file to a worker, which
// creates it, writes the data and applies the metadata as regular does. Its
// name is new to the root (see Apply), so O_EXCL cannot meet anything.
func (a *applier) regularAsync(pfd int, base string, mode uint32, hdr *tar.Header, body io.Reader) error {
	buf := filejobs.Buffer(int(hdr.Size))
	if _, err := io.ReadFull(body, *buf); err != nil {
		filejobs.PutBuffer(buf)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return opError("read", err)
	}
	a.written += hdr.Size
	name, off := hdr.Name, a.off
	a.files.Submit(&filejobs.Job{
		Dir: filejobs.NewDir(pfd, false), Base: base, Perm: 0o600, Data: *buf, Buf: buf,
		Meta: func(fd int) error { return a.fdMeta(fd, mode, hdr) },
		Fail: func(err error) error {
			var ee *EntryError
			if !errors.As(err, &ee) {
				ee = &EntryError{Op: "create", Err: err}
			}
			ee.Entry, ee.Offset = name, off
			return ee
		},
	})
	return nil
}

// fill copies the size bytes of body to fd in chunks as large as the buffer,
// each written with one write(2) when the kernel takes it whole.
func (a *applier) fill(fd int, size int64, body io.Reader) error {
	if want := min(size, copyBufferSize); int64(len(a.buf)) < want {
		a.buf = make([]byte, max(want, 64<<10))
	}
	total := size
	for size > 0 {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		chunk := a.buf[:min(size, int64(len(a.buf)))]
		n, err := io.ReadFull(body, chunk)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return opError("read", err)
		}
		for p := chunk[:n]; len(p) > 0; {
			w, err := unix.Write(fd, p)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return opError("write", err)
			}
			p = p[w:]
		}
		a.written += int64(n)
		size -= int64(n)
	}
	if total >= writeback.MinSize {
		// Start writing the data out now, without waiting for it, so that the
		// device works while later entries are applied and a sync afterwards
		// finds less to do. Failure only loses that head start.
		writeback.Start(fd, 0, 0)
	}
	return nil
}

// fillSparse copies a sparse file's data like fill, but leaves every all-zero run
// of whole 64 KiB chunks as a hole: archive/tar hands the holes of a sparse file
// over as zeros, and they stay holes on disk. The size was checked against the
// maximum file size; reading the synthesised zeros costs time, not space.
func (a *applier) fillSparse(fd int, size int64, body io.Reader) error {
	const chunk = 64 << 10
	if int64(len(a.buf)) < chunk {
		a.buf = make([]byte, max(chunk, min(size, copyBufferSize)))
	}
	var off int64
	for off < size {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		b := a.buf[:min(size-off, int64(len(a.buf)))]
		n, err := io.ReadFull(body, b)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return opError("read", err)
		}
		for p := 0; p < n; p += chunk {
			c := b[p:min(p+chunk, n)]
			if isZero(c) {
				continue
			}
			for q := c; len(q) > 0; {
				w, err := unix.Pwrite(fd, q, off+int64(p)+int64(len(c)-len(q)))
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return opError("write", err)
				}
				q = q[w:]
			}
			a.written += int64(len(c))
		}
		off += int64(n)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		return opError("truncate", err)
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (a *applier) hardlink(pfd int, base, target, linkname string) error {
	tdir, tbase := splitPath(target)
	tfd, err := a.parentDir(tdir, false)
	if err != nil {
		return opError("link", fmt.Errorf("%w: hard link target %q: %w", ErrInvalidEntry, linkname, err))
	}
	defer func() { a.release(tdir, tfd) }()
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return opError("link", fmt.Errorf("%w: hard link target %q: %w", ErrInvalidEntry, linkname, err))
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return opError("link", fmt.Errorf("%w: hard link to a directory", ErrInvalidEntry))
	}
	// Flags 0: a symlink target is linked itself, never followed.
	err = unix.Linkat(tfd, tbase, pfd, base, 0)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
			return nil // already that file, as in a link to itself
		}
		if err := a.removeAt(pfd, base, tfd); err != nil {
			return opError("remove", err)
		}
		err = unix.Linkat(tfd, tbase, pfd, base, 0)
	}
	if err != nil {
		return opError("link", err)
	}
	return nil
}

// meta applies owner, mode, xattrs and times to pfd/base, a symlink, device
// or fifo, which has no descriptor open.
func (a *applier) meta(pfd int, base string, symlink bool, mode uint32, hdr *tar.Header) error {
	if !a.opts.noOwnership {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return opError("chown", err)
		}
	}
	// After chown, which clears setuid and setgid.
	if !symlink {
		if err := chmodNoFollow(pfd, base, mode); err != nil {
			return opError("chmod", err)
		}
	}
	// After chown, which clears security.capability.
	if err := setXattrs(hdr, func(k string, v []byte) error {
		return unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base), k, v, 0)
	}); err != nil {
		return err
	}
	ts := times(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return opError("utimes", err)
	}
	return nil
}

// fdMeta applies owner, mode, xattrs and times to the open regular file fd,
// in the order meta uses, without resolving its name again.
func (a *applier) fdMeta(fd int, mode uint32, hdr *tar.Header) error {
	if !a.opts.noOwnership {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return opError("chown", err)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return opError("chmod", err)
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	ts := times(hdr)
	if err := futimens(fd, &ts); err != nil {
		return opError("utimes", err)
	}
	return nil
}

// futimens sets the times of fd: utimensat(2) with a NULL path, which
// x/sys/unix does not offer.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// chmodNoFollow changes the mode of a device or fifo without following base
// should it have been replaced by a symlink: fchmodat(2) has no
// AT_SYMLINK_NOFOLLOW before fchmodat2, so the node is pinned with an O_PATH
// descriptor and changed through its /proc/self/fd entry, which names exactly
// that inode.
func chmodNoFollow(pfd int, base string, mode uint32) error {
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
}

// dirMeta applies owner, mode and xattrs to the open directory fd and queues
// its times for the end.
func (a *applier) dirMeta(fd int, name string, hdr *tar.Header) error {
	if !a.opts.noOwnership {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return opError("chown", err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return opError("chmod", err)
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	dt := dirTimes{name: name, ts: times(hdr)}
	if i, ok := a.dirAt[name]; ok {
		a.dirs[i] = dt
	} else {
		a.dirAt[name] = len(a.dirs)
		a.dirs = append(a.dirs, dt)
	}
	return nil
}

func times(hdr *tar.Header) [2]unix.Timespec {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(at), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// applyXattr reports whether an xattr from a layer is applied: the user,
// trusted and security namespaces, except overlayfs's own attributes, which
// would change how an overlay mount sees the tree.
func applyXattr(k string) bool {
	switch {
	case strings.HasPrefix(k, "trusted.overlay."), strings.HasPrefix(k, "user.overlay."):
		return false
	case strings.HasPrefix(k, "user."), strings.HasPrefix(k, "trusted."), strings.HasPrefix(k, "security."):
		return true
	}
	return false
}

func setXattrs(hdr *tar.Header, set func(k string, v []byte) error) error {
	var keys []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) && applyXattr(k[len(paxXattr):]) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := set(k[len(paxXattr):], []byte(hdr.PAXRecords[k])); err != nil {
			if err == unix.ENOTSUP {
				err = fmt.Errorf("%w: %w", ErrUnsupported, err)
			}
			return opError("setxattr "+k[len(paxXattr):], err)
		}
	}
	return nil
}

// whiteout removes target (checked by the Validator) and all below it.
func (a *applier) whiteout(target string) error {
	dir, base := splitPath(target)
	pfd, err := a.parentDir(dir, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing there to remove
		}
		return err
	}
	defer func() { a.release(dir, pfd) }()
	if err := a.removeAt(pfd, base); err != nil {
		return opError("whiteout", err)
	}
	return nil
}

// opaque removes everything below dir that is not from this layer.
func (a *applier) opaque(dir string) error {
	if dir != "." {
		a.markAdded(dir)
	}
	fd, err := a.openDir(dir, true, unix.O_RDONLY)
	if err != nil {
		return err
	}
	if err := a.dropDirs(); err != nil {
		unix.Close(fd)
		return err
	}
	if err := a.opaqueClean(fd, dir); err != nil {
		return opError("opaque", err)
	}
	return nil
}

// opaqueClean takes ownership of fd.
func (a *applier) opaqueClean(fd int, dir string) error {
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := joinPath(dir, n)
		if _, ok := a.added[p]; !ok {
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			continue // a file or symlink from this layer
		}
		if err != nil {
			return err
		}
		if err := a.opaqueClean(cfd, p); err != nil {
			return err
		}
	}
	return nil
}

// removeAllAt removes name in dirfd and, for a directory, all below it, never
// following symlinks. A missing name is not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n); err != nil {
				break
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// finish sets directory times, children before parents.
func (a *applier) finish() error {
	// Every file is made before the directories' times are set.
	if a.files != nil {
		err := a.files.Wait()
		a.files.Stop(false)
		a.files = nil
		if err != nil {
			return err
		}
	}
	for i := len(a.dirs) - 1; i >= 0; i-- {
		if len(a.open) >= maxCachedDirs {
			a.dropDirs()
		}
		d := a.dirs[i]
		dir, base := splitPath(d.name)
		if d.name == "." {
			dir, base = ".", "."
		}
		pfd, err := a.parentDir(dir, false)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue // removed by a later whiteout
			}
			return &EntryError{Entry: d.name, Offset: -1, Op: "utimes", Err: err}
		}
		err = unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW)
		a.release(dir, pfd)
		if err != nil && err != unix.ENOENT {
			return &EntryError{Entry: d.name, Offset: -1, Op: "utimes", Err: err}
		}
	}
	return nil
}

// stagingPrefix starts the hidden directory ApplyNew stages a new tree in, beside
// its target; the process ID follows, so that a later ApplyNew in the same
// directory finds and removes the staging directories of dead processes.
const stagingPrefix = ".ocilayer-staging-"

// ApplyNew applies the layer read from r as a new directory tree at target, all or
// nothing: it applies into a hidden staging directory beside target and renames it
// into place only when every entry applied, so on any failure (or cancellation, or a
// killed process) target is left as it was and the staging directory is removed (by
// this call, or by the next ApplyNew in the same directory). target must not exist,
// or be an empty directory; otherwise the error matches ErrExist. As the layer
// starts from nothing, hard links must name earlier entries of the layer.
//
// Like Apply it does not sync: the rename makes the tree visible atomically to
// other processes, and a later syncfs(2) makes it durable.
func ApplyNew(ctx context.Context, target string, r io.Reader, opts ...ApplyOption) (int64, error) {
	target = filepath.Clean(target)
	if err := checkNewTarget(target); err != nil {
		return 0, err
	}
	parent := filepath.Dir(target)
	cleanStaging(parent)
	staging, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", stagingPrefix, os.Getpid()))
	if err != nil {
		return 0, &os.PathError{Op: "stage", Path: target, Err: err}
	}
	all := append(append([]ApplyOption(nil), opts...), func(o *applyOptions) error { o.standalone = true; return nil })
	n, err := Apply(ctx, staging, r, all...)
	if err == nil {
		err = checkNewTarget(target)
		if err == nil {
			// rename(2), not os.Rename: it replaces an empty directory.
			if rerr := unix.Rename(staging, target); rerr != nil {
				err = &os.PathError{Op: "rename", Path: target, Err: rerr}
			}
		}
	}
	if err != nil {
		os.RemoveAll(staging)
		return 0, err
	}
	return n, nil
}

// checkNewTarget accepts a missing path or an empty directory.
func checkNewTarget(target string) error {
	f, err := os.Open(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: target, Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.IsDir() {
		return &os.PathError{Op: "apply", Path: target, Err: ErrExist}
	}
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return &os.PathError{Op: "apply", Path: target, Err: ErrExist}
	}
	return nil
}

// cleanStaging removes staging directories in dir whose process is gone.
func cleanStaging(dir string) {
	m, _ := filepath.Glob(filepath.Join(dir, stagingPrefix+"*"))
	for _, p := range m {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(p), stagingPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || unix.Kill(pid, 0) == unix.ESRCH {
			os.RemoveAll(p)
		}
	}
}
