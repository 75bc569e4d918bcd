package ocilayer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Diff writes to w an OCI layer tar (PAX format) holding the changes recorded
// in the overlayfs upper directory upper. The overlay must not be mounted, or
// at least not be written to, while Diff runs. See the package documentation
// for the translation rules. Diff does not close w.
func Diff(ctx context.Context, w io.Writer, upper string, opts ...DiffOption) error {
	var o diffOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	d := &differ{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		buf:   make([]byte, copyBufferSize),
		links: make(map[devIno]string),
		v:     NewValidator(WithoutBase()),
	}
	var st unix.Stat_t
	if err := unix.Lstat(upper, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: upper, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &os.PathError{Op: "diff", Path: upper, Err: unix.ENOTDIR}
	}
	// An opaque upper root hides everything the lower layers hold.
	rootX, err := listXattrs(upper)
	if err != nil {
		return &EntryError{Entry: ".", Offset: -1, Op: "diff", Err: err}
	}
	if rootX["trusted.overlay.opaque"] == "y" || rootX["user.overlay.opaque"] == "y" {
		if err := d.emit(&tar.Header{Typeflag: tar.TypeReg, Name: whiteoutOpaque, ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), Format: tar.FormatPAX}, Opaque); err != nil {
			return &EntryError{Entry: ".", Offset: -1, Op: "diff", Err: err}
		}
	}
	if err := d.walk(".", upper); err != nil {
		return err
	}
	return d.tw.Close()
}

type devIno struct{ dev, ino uint64 }

type differ struct {
	ctx   context.Context
	tw    *tar.Writer
	buf   []byte
	links map[devIno]string // first name seen of each multiply linked file
	v     *Validator        // every entry written must mean what the upper directory holds
}

// emit writes hdr after checking that the layer's rules read it as want: a file
// whose own name starts with ".wh." would read as a whiteout, for example, and
// cannot be stored in a layer.
func (d *differ) emit(hdr *tar.Header, want Action) error {
	e := EntryFromHeader(hdr)
	c, err := d.v.Check(&e)
	if err != nil {
		return err
	}
	if c.Action != want {
		return fmt.Errorf("%w: %s would read as a whiteout or opaque marker in a layer", ErrUnsupported, hdr.Name)
	}
	return d.tw.WriteHeader(hdr)
}

// walk writes the entries of directory abs (named rel in the layer) in
// byte-wise order of their names, each directory before its children.
func (d *differ) walk(rel, abs string) error {
	ents, err := os.ReadDir(abs) // sorted by name
	if err != nil {
		return &EntryError{Entry: rel, Offset: -1, Op: "readdir", Err: err}
	}
	for _, e := range ents {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		name := joinPath(rel, e.Name())
		if err := d.entry(name, filepath.Join(abs, e.Name())); err != nil {
			return &EntryError{Entry: name, Offset: -1, Op: "diff", Err: err}
		}
	}
	return nil
}

func (d *differ) entry(name, abs string) error {
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return err
	}
	xattrs, err := listXattrs(abs)
	if err != nil {
		return err
	}
	mtime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
	dir, base := splitPath(name)
	whiteout := func() error {
		return d.emit(&tar.Header{
			Typeflag: tar.TypeReg,
			Name:     joinPath(dir, whiteoutPrefix+base),
			ModTime:  mtime,
			Format:   tar.FormatPAX,
		}, Whiteout)
	}
	kind := st.Mode & unix.S_IFMT
	for _, k := range []string{"trusted.overlay.", "user.overlay."} {
		if _, ok := xattrs[k+"metacopy"]; ok && kind == unix.S_IFREG {
			return fmt.Errorf("%w: overlayfs metacopy file (data is in a lower layer); mount without metacopy=on", ErrUnsupported)
		}
		if _, ok := xattrs[k+"redirect"]; ok {
			return fmt.Errorf("%w: overlayfs redirect (renamed directory); mount with redirect_dir=off", ErrUnsupported)
		}
		if _, ok := xattrs[k+"whiteout"]; ok && kind == unix.S_IFREG && st.Size == 0 {
			return whiteout() // an xattr whiteout, as nested overlays use
		}
	}
	if kind == unix.S_IFCHR && st.Rdev == 0 {
		return whiteout()
	}

	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}
	for k, v := range xattrs {
		if !strings.HasPrefix(k, "trusted.overlay.") && !strings.HasPrefix(k, "user.overlay.") {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = make(map[string]string)
			}
			hdr.PAXRecords[paxXattr+k] = v
		}
	}
	switch kind {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := d.emit(hdr, Create); err != nil {
			return err
		}
		if xattrs["trusted.overlay.opaque"] == "y" || xattrs["user.overlay.opaque"] == "y" {
			if err := d.emit(&tar.Header{
				Typeflag: tar.TypeReg,
				Name:     name + "/" + whiteoutOpaque,
				ModTime:  mtime,
				Format:   tar.FormatPAX,
			}, Opaque); err != nil {
				return err
			}
		}
		return d.walk(name, abs)
	}
	if st.Nlink > 1 {
		// Any non-directory may have several names: files, symlinks, devices, fifos.
		key := devIno{uint64(st.Dev), uint64(st.Ino)}
		if first, ok := d.links[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.PAXRecords = nil
			return d.emit(hdr, Create)
		}
		d.links[key] = name
	}
	switch kind {
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		return d.regular(hdr, abs)
	case unix.S_IFLNK:
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if kind == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("%w: file type %#o (sockets cannot be stored in a layer)", ErrUnsupported, kind)
	}
	return d.emit(hdr, Create)
}

func (d *differ) regular(hdr *tar.Header, abs string) error {
	f, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := d.emit(hdr, Create); err != nil {
		return err
	}
	var n int64
	for n < hdr.Size {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		b := d.buf
		if rest := hdr.Size - n; rest < int64(len(b)) {
			b = b[:rest]
		}
		m, err := f.Read(b)
		if m > 0 {
			if _, err := d.tw.Write(b[:m]); err != nil {
				return err
			}
			n += int64(m)
		}
		if err == io.EOF {
			return fmt.Errorf("file shrank from %d to %d bytes while being read", hdr.Size, n)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// listXattrs returns the extended attributes of path, not following a final
// symlink.
func listXattrs(path string) (map[string]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	names := make([]byte, size)
	size, err = unix.Llistxattr(path, names)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for k := range strings.SplitSeq(string(names[:size]), "\x00") {
		if k == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(path, k, nil)
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", k, err)
		}
		v := make([]byte, vsize)
		vsize, err = unix.Lgetxattr(path, k, v)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", k, err)
		}
		m[k] = string(v[:vsize])
	}
	return m, nil
}
