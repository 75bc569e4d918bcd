package cimview

import (
	"encoding/binary"
	"errors"
	"io"
	"path"
	"strings"
	"sync"
	"syscall"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Extended attribute names (see the package documentation).
const (
	XattrAttributes = "user.hcs.attributes"
	XattrTimes      = "user.hcs.times"
	XattrSD         = "user.hcs.sd"
	XattrEA         = "user.hcs.ea"
	XattrReparse    = "user.hcs.reparse"
	XattrADSPrefix  = "user.hcs.ads."
)

// Linux limits on extended attributes.
const (
	xattrSizeMax = 64 << 10 // XATTR_SIZE_MAX
	xattrNameMax = 255      // XATTR_NAME_MAX
)

// File type bits of Attr.Mode (the Linux values, on every OS).
const (
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
	ModeType    = 0o170000
)

// View is the POSIX view of one image. It is safe for concurrent use.
type View struct {
	im     *cimfs.Image
	rootID cimfs.FileID

	// nlink[id] is the number of names of file id (directories: 2 plus
	// subdirectories), counted once at New, for directories and files with more
	// than one name only: a file absent has one (or was not reached by the
	// walk). A map, not a slice: a corrupt image may use huge IDs.
	nlink map[cimfs.FileID]uint32
	files int // distinct files the walk reached

	mu    sync.Mutex                       // guards infos
	infos map[cimfs.FileID]*cimfs.FileInfo // records read, bounded by infoCacheLimit
}

// infoCacheLimit bounds the record cache; readdirplus and lookups of the same
// names read each record twice without it, and they come close together, so a
// small cache serves them (and the helper's memory does not grow with the image).
const infoCacheLimit = 1 << 12

// stat returns the record of id, from the cache when it was read before: the
// image never changes.
func (v *View) stat(id cimfs.FileID) (*cimfs.FileInfo, error) {
	v.mu.Lock()
	fi, ok := v.infos[id]
	v.mu.Unlock()
	if ok {
		return fi, nil
	}
	fi, err := v.im.StatID(id)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.infos) >= infoCacheLimit {
		v.infos = map[cimfs.FileID]*cimfs.FileInfo{}
	}
	v.infos[id] = fi
	v.mu.Unlock()
	return fi, nil
}

// Node is one file of the view: a file record, or an alternate stream of one
// when Stream >= 0. Nodes are immutable once made.
type Node struct {
	ID     cimfs.FileID
	Stream int    // index into Info.Streams, or -1
	Path   string // '/'-separated path it was first found at ("" for the root)
	Info   *cimfs.FileInfo

	target string // symlink target, for symlinks

	once sync.Once
	file *cimfs.File
	err  error
}

// Attr is what stat reports for a node. Times are FILETIMEs.
type Attr struct {
	Ino                        uint64
	Mode                       uint32
	Size                       int64
	Nlink                      uint32
	Atime, Mtime, Ctime, Btime winfile.Filetime
}

// Entry is one name of a directory listing.
type Entry struct {
	Name string
	Ino  uint64
	Mode uint32 // type bits only
}

// New makes the view of im, walking the tree once to count links. Parts of the
// tree that cannot be read are skipped by the walk (they give errors when
// reached later), so a partly corrupt image still mounts.
func New(im *cimfs.Image) *View {
	v := &View{im: im, rootID: im.Root(), infos: map[cimfs.FileID]*cimfs.FileInfo{}}
	v.countLinks()
	return v
}

// Image returns the image the view shows.
func (v *View) Image() *cimfs.Image { return v.im }

// Files returns the number of distinct files in the tree.
func (v *View) Files() int { return v.files }

func (v *View) countLinks() {
	v.nlink = map[cimfs.FileID]uint32{}
	// met has a bit per file ID met: IDs are dense (the walk stats each one
	// first, so only IDs of records the image has get here).
	var met []uint64
	bump := func(id cimfs.FileID, n uint32) {
		w := int(id / 64)
		if w >= len(met) {
			met = append(met, make([]uint64, w+1-len(met))...)
		}
		if met[w]&(1<<(id%64)) == 0 {
			met[w] |= 1 << (id % 64)
			v.files++
			if n == 1 {
				return // a file's first name: the default count
			}
		} else if _, ok := v.nlink[id]; !ok && n == 1 {
			n++ // a second name of a file: its first was not stored
		}
		v.nlink[id] += n
	}
	bump(v.rootID, 2)
	seen := map[cimfs.FileID]bool{v.rootID: true}
	stack := []cimfs.FileID{v.rootID}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ents, err := v.im.ReadDirID(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.ID == 0 {
				continue
			}
			fi, err := v.stat(e.ID) // warms the record cache for the first lookups
			if err != nil {
				continue
			}
			if fi.IsDir() && !isLink(fi.ReparseTag) {
				if seen[e.ID] {
					continue // a cycle or a linked directory: not followed twice
				}
				seen[e.ID] = true
				bump(e.ID, 2)
				v.nlink[dir]++
				stack = append(stack, e.ID)
				continue
			}
			bump(e.ID, 1)
		}
	}
}

// ino maps a file ID to its inode number: the root is 1, and the file that
// has ID 1 (if the root has another) takes the root's ID.
func (v *View) ino(id cimfs.FileID) uint64 {
	switch id {
	case v.rootID:
		return 1
	case 1:
		return uint64(v.rootID)
	}
	return uint64(id)
}

// Root returns the root directory's node.
func (v *View) Root() (*Node, error) {
	return v.node(v.rootID, "")
}

func (v *View) node(id cimfs.FileID, p string) (*Node, error) {
	fi, err := v.stat(id)
	if err != nil {
		return nil, err
	}
	n := &Node{ID: id, Stream: -1, Path: p, Info: fi}
	if isLink(fi.ReparseTag) {
		rb, err := fi.ReparseData()
		if err != nil {
			return nil, err
		}
		rp, err := winfile.DecodeReparsePoint(rb)
		if err != nil {
			return nil, err
		}
		n.target = linkTarget(rp, p)
	}
	return n, nil
}

func isLink(tag uint32) bool {
	return tag == winfile.ReparseTagSymlink || tag == winfile.ReparseTagMountPoint
}

// IsDir reports whether n is shown as a directory.
func (n *Node) IsDir() bool { return n.Stream < 0 && n.Info.IsDir() && !isLink(n.Info.ReparseTag) }

// IsSymlink reports whether n is shown as a symbolic link.
func (n *Node) IsSymlink() bool { return n.Stream < 0 && isLink(n.Info.ReparseTag) }

// Lookup finds name in the directory dir. "file:stream" finds an alternate
// data stream of file.
func (v *View) Lookup(dir *Node, name string) (*Node, error) {
	if !dir.IsDir() {
		return nil, syscall.ENOTDIR
	}
	base, stream, hasStream := strings.Cut(name, ":")
	id, err := v.im.LookupIn(dir.ID, base)
	if err != nil {
		return nil, err
	}
	// The stored name keeps the stored case; the lookup may have used another.
	n, err := v.node(id, path.Join(dir.Path, base))
	if err != nil || !hasStream {
		return n, err
	}
	stream = strings.TrimSuffix(stream, ":$DATA")
	for i, s := range n.Info.Streams {
		if strings.EqualFold(s.Name, stream) {
			return &Node{ID: id, Stream: i, Path: n.Path + ":" + s.Name, Info: n.Info}, nil
		}
	}
	return nil, syscall.ENOENT
}

// ReadDir lists the directory dir (without "." and "..").
func (v *View) ReadDir(dir *Node) ([]Entry, error) {
	if !dir.IsDir() {
		return nil, syscall.ENOTDIR
	}
	ents, err := v.im.ReadDirID(dir.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(ents))
	for _, e := range ents {
		if e.ID == 0 {
			continue
		}
		fi, err := v.stat(e.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Name: e.Name, Ino: v.ino(e.ID), Mode: typeOf(fi)})
	}
	return out, nil
}

func typeOf(fi *cimfs.FileInfo) uint32 {
	switch {
	case isLink(fi.ReparseTag):
		return ModeSymlink
	case fi.IsDir():
		return ModeDir
	}
	return ModeRegular
}

// Attr returns what stat reports for n.
func (v *View) Attr(n *Node) Attr {
	bi := n.Info.Info
	a := Attr{
		Ino:   v.ino(n.ID),
		Nlink: 1,
		Atime: bi.LastAccessTime,
		Mtime: bi.LastWriteTime,
		Ctime: bi.ChangeTime,
		Btime: bi.CreationTime,
	}
	if k := v.nlink[n.ID]; k > 0 {
		a.Nlink = k
	}
	perm := uint32(0o644)
	switch {
	case n.Stream >= 0:
		a.Ino |= uint64(n.Stream+1) << 32
		a.Nlink = 1
		a.Mode = ModeRegular
		a.Size = n.Info.Streams[n.Stream].Size
	case n.IsSymlink():
		a.Mode, perm = ModeSymlink, 0o777
		a.Size = int64(len(n.target))
	case n.Info.IsDir():
		a.Mode, perm = ModeDir, 0o755
	default:
		a.Mode = ModeRegular
		a.Size = n.Info.Size
	}
	if bi.FileAttributes&winfile.AttrReadOnly != 0 && a.Mode != ModeSymlink {
		perm &^= 0o222
	}
	a.Mode |= perm
	return a
}

// Readlink returns a symlink's Linux target.
func (v *View) Readlink(n *Node) (string, error) {
	if !n.IsSymlink() {
		return "", syscall.EINVAL
	}
	return n.target, nil
}

// open returns the stream's reader, opened once per node.
func (v *View) open(n *Node) (*cimfs.File, error) {
	n.once.Do(func() {
		if n.Stream >= 0 {
			n.file, n.err = v.im.OpenStreamID(n.ID, n.Info.Streams[n.Stream].Name)
		} else {
			n.file, n.err = v.im.OpenID(n.ID)
		}
	})
	return n.file, n.err
}

// Open checks that n can be read as a file and prepares its reader.
func (v *View) Open(n *Node) error {
	if n.IsDir() {
		return syscall.EISDIR
	}
	if n.IsSymlink() {
		return syscall.ELOOP
	}
	_, err := v.open(n)
	return err
}

// Extent returns, for a stream stored as it reads, the region file holding it
// and the offset of its first byte there (see cimfs.File.Extent).
func (v *View) Extent(n *Node) (io.ReaderAt, int64, bool) {
	f, err := v.open(n)
	if err != nil {
		return nil, 0, false
	}
	return f.Extent()
}

// Size returns the length of the data a node's reads return.
func (v *View) Size(n *Node) int64 {
	if n.Stream >= 0 {
		return n.Info.Streams[n.Stream].Size
	}
	return n.Info.Size
}

// ReadAt reads file data into p at off; a short count means the end of the
// file.
func (v *View) ReadAt(n *Node, p []byte, off int64) (int, error) {
	f, err := v.open(n)
	if err != nil {
		return 0, err
	}
	k, err := f.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	return k, err
}

// ListXattr returns the names of n's extended attributes.
func (v *View) ListXattr(n *Node) []string {
	if n.Stream >= 0 {
		return nil
	}
	fi := n.Info
	names := []string{XattrAttributes, XattrTimes}
	if fi.SecurityDescriptorSet {
		names = append(names, XattrSD)
	}
	if fi.EALength > 0 {
		names = append(names, XattrEA)
	}
	if fi.ReparseTag != 0 {
		names = append(names, XattrReparse)
	}
	for _, s := range fi.Streams {
		if len(XattrADSPrefix)+len(s.Name) <= xattrNameMax {
			names = append(names, XattrADSPrefix+s.Name)
		}
	}
	return names
}

// ErrNoAttr is the error of GetXattr for a name the node does not have.
var ErrNoAttr = syscall.ENODATA

// GetXattr returns the value of attribute name. Values of streams larger
// than Linux allows are returned too; the FUSE layer reports their size only.
func (v *View) GetXattr(n *Node, name string) ([]byte, error) {
	if n.Stream >= 0 {
		return nil, ErrNoAttr
	}
	fi := n.Info
	switch name {
	case XattrAttributes:
		return binary.LittleEndian.AppendUint32(nil, fi.Info.FileAttributes), nil
	case XattrTimes:
		b := make([]byte, 0, 32)
		for _, t := range []winfile.Filetime{fi.Info.CreationTime, fi.Info.LastAccessTime, fi.Info.LastWriteTime, fi.Info.ChangeTime} {
			b = binary.LittleEndian.AppendUint64(b, uint64(t))
		}
		return b, nil
	case XattrSD:
		if fi.SecurityDescriptorSet {
			return fi.SecurityDescriptor()
		}
	case XattrEA:
		if fi.EALength > 0 {
			return fi.ExtendedAttributes()
		}
	case XattrReparse:
		if fi.ReparseTag != 0 {
			return fi.ReparseData()
		}
	}
	if s, ok := strings.CutPrefix(name, XattrADSPrefix); ok {
		for i, st := range fi.Streams {
			if st.Name != s {
				continue
			}
			if st.Size > xattrSizeMax {
				return nil, &StreamTooLargeError{Size: st.Size}
			}
			sn := &Node{ID: n.ID, Stream: i, Info: fi}
			b := make([]byte, st.Size)
			k, err := v.ReadAt(sn, b, 0)
			if err != nil {
				return nil, err
			}
			if int64(k) != st.Size {
				return nil, syscall.EIO
			}
			return b, nil
		}
	}
	return nil, ErrNoAttr
}

// StreamTooLargeError is GetXattr's error for an alternate stream whose content
// exceeds the 64 KiB Linux allows for an attribute value.
type StreamTooLargeError struct{ Size int64 }

func (e *StreamTooLargeError) Error() string {
	return "cimview: alternate stream larger than an extended attribute can be"
}

// Errno maps an error of the view to the errno a file system returns.
func Errno(err error) syscall.Errno {
	var en syscall.Errno
	var big *StreamTooLargeError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &en):
		return en
	case errors.As(err, &big):
		return syscall.E2BIG
	case errors.Is(err, cimfs.ErrNotFound), errors.Is(err, cimfs.ErrInvalidName):
		return syscall.ENOENT
	case errors.Is(err, cimfs.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, cimfs.ErrIsDir):
		return syscall.EISDIR
	}
	return syscall.EIO
}
