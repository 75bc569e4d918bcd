package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/ext4"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

// The differential test of the Linux layer rules: every generated tar, hostile or
// not, goes through every way into a Linux layer: an ext4 image (mounted to read it
// back), ocilayer.ApplyNew into a new directory, and Diff of that directory applied
// again. The image and the apply must accept or reject alike, with the same class of
// error naming the same entry at the same offset; what they accept must hold the same
// tree (the image read as applied: overlay whiteouts are absences), and the diff
// round trip must give that tree back.

type lent struct {
	hdr  tar.Header
	body string
	raw  func([]byte) []byte
}

var ltime = time.Unix(1600000000, 250000000)

func lf(name, body string) lent {
	return lent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), Uid: 1000, Gid: 1000}, body: body}
}
func ld(name string) lent {
	return lent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}
func ls(name, target string) lent {
	return lent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}
func ll(name, target string) lent {
	return lent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}
func lwh(name string) lent { return lf(name, "") }
func ldev(name string, typ byte, major, minor int64) lent {
	return lent{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o600, Devmajor: major, Devminor: minor}}
}
func lx(e lent, k, v string) lent {
	m := map[string]string{}
	for a, b := range e.hdr.PAXRecords {
		m[a] = b
	}
	m[k] = v
	e.hdr.PAXRecords = m
	return e
}
func lmode(e lent, mode int64) lent { e.hdr.Mode = mode; return e }

func buildL(t testing.TB, ents []lent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var raws []func([]byte) []byte
	for _, e := range ents {
		h := e.hdr
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = ltime
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %q: %v", h.Name, err)
		}
		tw.Write([]byte(e.body))
		if e.raw != nil {
			raws = append(raws, e.raw)
		}
	}
	tw.Close()
	b := buf.Bytes()
	for _, r := range raws {
		b = r(b)
	}
	return b
}

// sparse10Tar is one PAX sparse 1.0 member (see pkg/ocilayer's tests).
func sparse10Tar(name string, realSize int64, regions [][2]int64) []byte {
	var m strings.Builder
	fmt.Fprintf(&m, "%d\n", len(regions))
	var data int64
	for _, r := range regions {
		fmt.Fprintf(&m, "%d\n%d\n", r[0], r[1])
		data += r[1]
	}
	mapBlock := make([]byte, (m.Len()+511)&^511)
	copy(mapBlock, m.String())
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "GNUSparseFile.0/" + name, Mode: 0o644, ModTime: ltime, Format: tar.FormatPAX,
		Size: int64(len(mapBlock)) + data, PAXRecords: map[string]string{
			"XNU.sparse.major": "1", "XNU.sparse.minor": "0", "XNU.sparse.name": name, "XNU.sparse.realsize": fmt.Sprint(realSize),
		}})
	tw.Write(mapBlock)
	tw.Write(bytes.Repeat([]byte{'s'}, int(data)))
	tw.Close()
	return bytes.ReplaceAll(buf.Bytes(), []byte("XNU.sparse."), []byte("GNU.sparse."))
}

type lcase struct {
	name  string
	ents  []lent
	want  string // class; "" accepts
	entry string // entry the error names
	tar   []byte // instead of ents
}

func lcases(t testing.TB) []lcase {
	long := strings.Repeat("n", 256)
	ok255 := strings.Repeat("m", 255)
	cs := []lcase{
		// Names.
		{name: "dotdot", ents: []lent{lf("a", "a"), lf("../x", "x")}, want: "insecure", entry: "../x"},
		{name: "dotdot deep", ents: []lent{lf("a/b/../../../x", "x")}, want: "insecure", entry: "a/b/../../../x"},
		{name: "dotdot after dir", ents: []lent{ld("d/"), lf("d/../../x", "x")}, want: "insecure", entry: "d/../../x"},
		{name: "absolute name", ents: []lent{lf("/abs", "x"), lf("//abs2", "y")}},
		{name: "dot names", ents: []lent{lf("./a", "a"), lf("b/./c", "c"), lf("d//e", "e")}},
		{name: "dotdot inside", ents: []lent{lf("a/../b", "b")}},
		{name: "long component", ents: []lent{lf(long, "x")}, want: "invalid", entry: long},
		{name: "255 component", ents: []lent{lf(ok255, "x")}},
		{name: "backslash colon", ents: []lent{lf(`a\b`, "1"), lf("c:d", "2"), lf("sp ace", "3")}},
		{name: "unicode", ents: []lent{lf("ünï/日本", "u"), lf("emoji😀", "e")}},
		{name: "case variants", ents: []lent{lf("A", "1"), lf("a", "2")}},
		{name: "nul in pax path", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("p", 101) + "Q", Mode: 0o644},
			raw: func(b []byte) []byte { return bytes.Replace(b, []byte("pQ\n"), []byte("p\x00\n"), 1) }}}, want: "tar", entry: ""},
		// Root entry.
		{name: "root dir", ents: []lent{lmode(ld("./"), 0o700), lf("a", "a")}},
		{name: "root slash dir", ents: []lent{lmode(ld("/"), 0o711)}},
		{name: "root file", ents: []lent{lf(".", "")}, want: "invalid", entry: "."},
		{name: "root symlink", ents: []lent{ls("./", "/etc")}, want: "invalid", entry: "./"},
		// Symlinks and writes below non-directories of the layer.
		{name: "symlink slash then below", ents: []lent{ls("s", "/"), lf("s/x", "x")}, want: "notdir", entry: "s/x"},
		{name: "symlink dotdot then below", ents: []lent{ls("s", "../.."), lf("s/x", "x")}, want: "notdir", entry: "s/x"},
		{name: "symlink abs then dir below", ents: []lent{ls("s", "/etc"), ld("s/sub/")}, want: "notdir", entry: "s/sub/"},
		{name: "chained symlinks", ents: []lent{ld("d"), ls("d/b", "../../../.."), ls("a", "d/b"), lf("a/x", "x")}, want: "notdir", entry: "a/x"},
		{name: "below file", ents: []lent{lf("f", "f"), lf("f/x", "x")}, want: "notdir", entry: "f/x"},
		{name: "below fifo", ents: []lent{ldev("p", tar.TypeFifo, 0, 0), lf("p/x", "x")}, want: "notdir", entry: "p/x"},
		{name: "below device", ents: []lent{ldev("c", tar.TypeChar, 1, 3), ld("c/d/")}, want: "notdir", entry: "c/d/"},
		{name: "whiteout below symlink", ents: []lent{ls("s", "/"), lwh("s/.wh.x")}, want: "notdir", entry: "s/.wh.x"},
		{name: "opaque below symlink", ents: []lent{ls("s", "/"), lwh("s/.wh..wh..opq")}, want: "notdir", entry: "s/.wh..wh..opq"},
		{name: "symlink targets", ents: []lent{ls("abs", "/etc/passwd"), ls("rel", "../../x"), ls("long", strings.Repeat("t/", 200))}},
		{name: "symlink empty target", ents: []lent{ls("empty", "")}, want: "invalid", entry: "empty"},
		{name: "symlink replaced by dir", ents: []lent{ls("s", "/"), ld("s/"), lf("s/x", "x")}},
		{name: "file replaced by dir", ents: []lent{lf("f", "f"), ld("f/"), lf("f/x", "x")}},
		// Duplicates: the later entry wins.
		{name: "file twice", ents: []lent{lf("a", "first"), lf("a", "second, longer")}},
		{name: "dir twice", ents: []lent{ld("d/"), lf("d/x", "x"), lmode(ld("d/"), 0o700)}},
		{name: "dir then file", ents: []lent{ld("d/"), lf("d/x", "x"), lf("d", "file")}},
		{name: "dir then file then below", ents: []lent{ld("d/"), lf("d/x", "x"), lf("d", "file"), lf("d/y", "y")}, want: "notdir", entry: "d/y"},
		{name: "symlink then file", ents: []lent{ls("a", "/x"), lf("a", "file")}},
		{name: "link over file", ents: []lent{lf("a", "a"), lf("b", "b"), ll("b", "a")}},
		{name: "link over dir", ents: []lent{lf("a", "a"), ld("i/"), lf("i/x", "x"), ll("i", "a")}},
		// Whiteouts and opaque directories.
		{name: "whiteout nothing", ents: []lent{lwh(".wh.gone"), lf("a", "a")}},
		{name: "whiteout earlier entry", ents: []lent{lf("a", "a"), lwh(".wh.a")}},
		{name: "whiteout dir then again", ents: []lent{ld("d/"), lf("d/x", "x"), lwh(".wh.d"), lf("d/y", "y")}},
		{name: "whiteout dir then dir", ents: []lent{ld("d/"), lf("d/x", "x"), lwh(".wh.d"), lmode(ld("d/"), 0o700), lf("d/y", "y")}},
		{name: "whiteout in subdir", ents: []lent{ld("d/"), lf("d/x", "x"), lf("d/y", "y"), lwh("d/.wh.x")}},
		{name: "whiteout then recreate", ents: []lent{lwh(".wh.a"), lf("a", "new")}},
		{name: "opaque", ents: []lent{ld("d/"), lwh("d/.wh..wh..opq"), lf("d/x", "x")}},
		{name: "opaque after entries", ents: []lent{ld("d/"), lf("d/x", "x"), lwh("d/.wh..wh..opq")}},
		{name: "opaque missing dir", ents: []lent{lwh("n/.wh..wh..opq")}},
		{name: "opaque root", ents: []lent{lwh(".wh..wh..opq"), lf("a", "a")}},
		{name: "opaque on file", ents: []lent{lf("f", "f"), lwh("f/.wh..wh..opq")}, want: "notdir", entry: "f/.wh..wh..opq"},
		{name: "aufs meta", ents: []lent{lwh(".wh..wh.plnk"), ld(".wh..wh.aufs/"), lf("a", "a")}},
		{name: "whiteout empty", ents: []lent{lwh(".wh.")}, want: "invalid", entry: ".wh."},
		{name: "whiteout dot", ents: []lent{lwh("d/.wh..")}, want: "invalid", entry: "d/.wh.."},
		{name: "whiteout dotdot", ents: []lent{lwh("d/.wh...")}, want: "insecure", entry: "d/.wh..."},
		{name: "whiteout dotdot root", ents: []lent{lwh(".wh...")}, want: "insecure", entry: ".wh..."},
		// Hard links.
		{name: "link ok", ents: []lent{lf("a", "data"), ll("b", "a"), ll("c", "b"), ld("d/"), ll("d/e", "a")}},
		{name: "link missing", ents: []lent{ll("l", "nothing")}, want: "link", entry: "l"},
		{name: "link later", ents: []lent{ll("l", "a"), lf("a", "a")}, want: "link", entry: "l"},
		{name: "link to dir", ents: []lent{ld("d/"), ll("l", "d")}, want: "link", entry: "l"},
		{name: "link to implied dir", ents: []lent{lf("d/x", "x"), ll("l", "d")}, want: "link", entry: "l"},
		{name: "link to root", ents: []lent{ll("l", ".")}, want: "link", entry: "l"},
		{name: "link to symlink", ents: []lent{ls("s", "t"), ll("l", "s")}},
		{name: "link to fifo", ents: []lent{ldev("p", tar.TypeFifo, 0, 0), ll("l", "p")}},
		{name: "link to device", ents: []lent{ldev("c", tar.TypeChar, 1, 3), ll("l", "c")}},
		{name: "link dotdot", ents: []lent{lf("a", "a"), ll("l", "../a")}, want: "insecure", entry: "l"},
		{name: "link absolute", ents: []lent{lf("a", "a"), ll("l", "/a")}},
		{name: "link to whited out", ents: []lent{lf("a", "a"), lwh(".wh.a"), ll("l", "a")}, want: "link", entry: "l"},
		{name: "link below symlink", ents: []lent{lf("a", "a"), ls("s", "."), ll("l", "s/a")}, want: "link", entry: "l"},
		{name: "link into replaced dir", ents: []lent{ld("d/"), lf("d/x", "x"), lf("d", "f"), ll("l", "d/x")}, want: "link", entry: "l"},
		{name: "link to self name", ents: []lent{lf("a", "a"), ll("a", "a")}},
		// Extended attributes.
		{name: "user xattr", ents: []lent{lx(lf("a", "a"), "SCHILY.xattr.user.one", "1"), lx(ld("d/"), "SCHILY.xattr.user.dir", "d")}},
		{name: "trusted xattr", ents: []lent{lx(lf("a", "a"), "SCHILY.xattr.trusted.mine", "x")}},
		{name: "overlay opaque xattr", ents: []lent{lx(ld("d/"), "SCHILY.xattr.trusted.overlay.opaque", "y")}, want: "invalid", entry: "d/"},
		{name: "overlay redirect xattr", ents: []lent{lx(lf("f", "x"), "SCHILY.xattr.trusted.overlay.redirect", "/etc")}, want: "invalid", entry: "f"},
		{name: "user overlay xattr", ents: []lent{lx(lf("f", "x"), "SCHILY.xattr.user.overlay.origin", "x")}, want: "invalid", entry: "f"},
		{name: "overlay xattr on symlink", ents: []lent{lx(ls("s", "x"), "SCHILY.xattr.trusted.overlay.metacopy", "")}, want: "invalid", entry: "s"},
		// Entry types and metadata.
		{name: "devices", ents: []lent{ldev("null", tar.TypeChar, 1, 3), ldev("loop", tar.TypeBlock, 7, 0), ldev("fifo", tar.TypeFifo, 0, 0)}},
		{name: "modes", ents: []lent{lmode(lf("suid", "s"), 0o4755), lmode(lf("sgid", "g"), 0o2750), lmode(ld("tmp/"), 0o1777), lmode(lf("none", "n"), 0)}},
		{name: "owners", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "o", Mode: 0o640, Uid: 123456, Gid: 654321}}}},
		{name: "contiguous", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeCont, Name: "c", Mode: 0o644, Size: 3}, body: "abc"}}},
		{name: "unknown type", ents: []lent{{hdr: tar.Header{Typeflag: 'Z', Name: "z", Mode: 0o644}}}, want: "unsupported", entry: "z"},
		{name: "global header", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"comment": "hi"}}}, lf("a", "a")}},
		{name: "gnu long name", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", 80) + "f", Mode: 0o644, Size: 1, Format: tar.FormatGNU}, body: "f"}}},
		{name: "ustar", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "u", Mode: 0o644, Size: 1, Format: tar.FormatUSTAR}, body: "u"}}},
		{name: "times", ents: []lent{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "t", Mode: 0o644, ModTime: time.Unix(1, 999999999), AccessTime: time.Unix(2, 5)}}, {hdr: tar.Header{Typeflag: tar.TypeReg, Name: "old", Mode: 0o644, ModTime: time.Unix(-86400*365, 0)}}}},
		{name: "empty files", ents: []lent{lf("e1", ""), lf("d/e2", "")}},
		{name: "big file", ents: []lent{lf("big", strings.Repeat("0123456789abcdef", 20000))}},
	}
	// Sizes and damaged streams.
	huge := func(name string, size int64) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: ltime, Format: tar.FormatPAX})
		tw.Write(bytes.Repeat([]byte("h"), 4096))
		tw.Flush()
		return b.Bytes()
	}
	good := buildL(t, []lent{lf("a", strings.Repeat("a", 3000)), lf("b", "b")})
	cs = append(cs,
		lcase{name: "huge size", tar: huge("huge", 1<<40), want: "too-large", entry: "huge"},
		lcase{name: "over 128 GiB", tar: huge("huge", 129<<30), want: "too-large", entry: "huge"},
		lcase{name: "truncated body", tar: huge("t", 10000), want: "tar", entry: "t"},
		lcase{name: "truncated header", tar: good[:len(good)-1024-512-100], want: "tar", entry: ""},
		lcase{name: "garbage", tar: bytes.Repeat([]byte("not a tar "), 200), want: "tar", entry: ""},
		lcase{name: "sparse 1.0", tar: sparse10Tar("sp", 4<<20, [][2]int64{{0, 100}, {1 << 20, 4096}, {4<<20 - 10, 10}})},
		lcase{name: "sparse 1.0 empty", tar: sparse10Tar("sp", 1<<20, nil)},
		lcase{name: "sparse huge", tar: sparse10Tar("sp", 1<<40, [][2]int64{{0, 1}}), want: "too-large", entry: "sp"},
	)
	// Every single-entry hostile name also below a directory, and every accepted
	// layer again behind a first entry, so offsets are checked past 0.
	n := len(cs)
	for _, c := range cs[:n] {
		if c.tar != nil {
			continue
		}
		d := c
		d.name = c.name + " behind"
		d.ents = append([]lent{lf("zz-first", strings.Repeat("z", 700))}, c.ents...)
		if c.entry == "." || c.entry == "./" {
			continue
		}
		cs = append(cs, d)
	}
	return cs
}

// lclass maps an error to its class, the same for ext4.Build and Apply.
func lclass(err error) string {
	switch {
	case errors.Is(err, ocilayer.ErrInsecurePath):
		return "insecure"
	case errors.Is(err, ocilayer.ErrNotDir):
		return "notdir"
	case errors.Is(err, ocilayer.ErrLinkTarget):
		return "link"
	case errors.Is(err, ocilayer.ErrTooLarge):
		return "too-large"
	case errors.Is(err, ocilayer.ErrUnsupported):
		return "unsupported"
	case errors.Is(err, ocilayer.ErrInvalidEntry):
		return "invalid"
	case errors.Is(err, ext4.ErrInvalidTar), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, tar.ErrHeader):
		return "tar"
	}
	return "other"
}

// errEntry returns the entry and offset an error names.
func errEntry(err error) (string, int64) {
	var ee *ocilayer.EntryError
	if errors.As(err, &ee) {
		return ee.Entry, ee.Offset
	}
	var xe *ext4.Error
	if errors.As(err, &xe) {
		return xe.Entry, xe.Offset
	}
	return "?", -3
}

// lnode is what the tree comparison keeps of a file.
type lnode struct {
	kind, mode, uid, gid uint32
	size                 int64
	sum                  [8]byte
	target               string
	rdev                 uint64
	mtime                int64
	xattrs               string
	link                 string // first name of the same inode, for hard links
}

// ltree reads a tree as applied: overlay whiteouts (0/0 character devices) of an
// image are absences, its opaque attributes and lost+found are left out, and
// directory times are compared only for directories the tar names (implied ones get
// a time of the tool's choosing).
func ltree(t testing.TB, root string, image bool, explicit map[string]bool) map[string]lnode {
	t.Helper()
	m := map[string]lnode{}
	first := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if image && rel == "lost+found" {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := lnode{kind: st.Mode & unix.S_IFMT, mode: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid, rdev: uint64(st.Rdev)}
		if image && n.kind == unix.S_IFCHR && st.Rdev == 0 && !explicit[rel] {
			return nil // a whiteout
		}
		switch n.kind {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			n.size = int64(len(b))
			copy(n.sum[:], s[:])
		case unix.S_IFLNK:
			n.target, _ = os.Readlink(p)
		}
		if n.kind != unix.S_IFDIR || explicit[rel] {
			n.mtime = st.Mtim.Nano()
		}
		if n.kind != unix.S_IFDIR && st.Nlink > 1 {
			if f, ok := first[st.Ino]; ok {
				n.link = f
			} else {
				first[st.Ino] = rel
			}
		}
		var kv []string
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			buf := make([]byte, sz)
			sz, _ = unix.Llistxattr(p, buf)
			for k := range strings.SplitSeq(string(buf[:sz]), "\x00") {
				if k == "" || strings.HasPrefix(k, "trusted.overlay.") {
					continue
				}
				v := make([]byte, 65536)
				vn, _ := unix.Lgetxattr(p, k, v)
				kv = append(kv, k+"="+string(v[:max(vn, 0)]))
			}
		}
		sort.Strings(kv)
		n.xattrs = strings.Join(kv, ",")
		if rel != "." {
			m[rel] = n
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", root, err)
	}
	return m
}

// explicitNames lists the cleaned names the tar gives entries for, with the type
// of the last one.
func explicitNames(b []byte) map[string]bool {
	m := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			return m
		}
		if n, err := ocilayer.CleanName(h.Name); err == nil {
			m[n] = h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeChar
		}
	}
}

func diffTrees(a, b map[string]lnode) string {
	var names []string
	for n := range a {
		names = append(names, n)
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		x, okx := a[n]
		y, oky := b[n]
		if okx != oky || x != y {
			return fmt.Sprintf("%s:\n\t%+v (%v)\n\t%+v (%v)", n, x, okx, y, oky)
		}
	}
	return ""
}

func TestDifferentialLinuxLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the differential test mounts ext4 images and applies owners and devices: it needs root")
	}
	ctx := context.Background()
	cases := lcases(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.tar
			if in == nil {
				in = buildL(t, c.ents)
			}
			dir := t.TempDir()
			img := filepath.Join(dir, "image.ext4")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			_, errImg := ext4.Build(ctx, f, bytes.NewReader(in), ext4.WithConvertWhiteouts())
			f.Close()
			applied := filepath.Join(dir, "applied")
			_, errApply := ocilayer.ApplyNew(ctx, applied, bytes.NewReader(in))

			for _, r := range []struct {
				path string
				err  error
			}{{"ext4 image", errImg}, {"apply", errApply}} {
				got := ""
				if r.err != nil {
					got = lclass(r.err)
				}
				if got != c.want {
					t.Errorf("%s: verdict %q (%v), want %q", r.path, got, r.err, c.want)
				}
			}
			if c.want != "" {
				e1, o1 := errEntry(errImg)
				e2, o2 := errEntry(errApply)
				want := c.entry
				if strings.HasSuffix(c.name, " behind") {
					want = c.entry
				}
				if e1 != want || e2 != want || o1 != o2 {
					t.Errorf("errors name %q at %d (ext4) and %q at %d (apply); want %q at one offset", e1, o1, e2, o2, want)
				}
				if _, err := os.Lstat(applied); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a failed apply left %s", applied)
				}
				return
			}
			explicit := explicitNames(in)
			want := ltree(t, applied, false, explicit)
			if d := diffTrees(want, ltree(t, mountImage(t, img), true, explicit)); d != "" {
				t.Errorf("the image and the applied tree differ at %s", d)
			}
			// Diff round trip: the applied tree, as an upper directory, written as
			// a layer and applied again.
			var layer bytes.Buffer
			if err := ocilayer.Diff(ctx, &layer, applied); err != nil {
				t.Fatalf("Diff: %v", err)
			}
			again := filepath.Join(dir, "again")
			if _, err := ocilayer.ApplyNew(ctx, again, bytes.NewReader(layer.Bytes())); err != nil {
				t.Fatalf("applying Diff's layer: %v", err)
			}
			if d := diffTrees(want, ltree(t, again, false, explicit)); d != "" {
				t.Errorf("the diff round trip changed %s", d)
			}
		})
		_ = i
	}
	if len(cases) < 150 {
		t.Errorf("only %d generated layers", len(cases))
	}
	t.Logf("%d layers through ext4, apply and diff", len(cases))
}
