package ext4_test

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/pkg/ext4"
)

// mountImage mounts img read-only through a loop device (autoclear) and returns the
// mount point; cleanup unmounts and detaches.
func mountImage(t *testing.T, img string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting an image needs root (CAP_SYS_ADMIN) and loop devices")
	}
	dev, err := loop.Attach(img, loop.Options{ReadOnly: true, AutoClear: true})
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("loop devices unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := unix.Mount(dev.Path(), dir, "ext4", unix.MS_RDONLY, ""); err != nil {
		dev.Detach()
		t.Fatalf("mount %s: %v", dev.Path(), err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if err := dev.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	return dir
}

// expected is the state a tar's entries leave, applied in order with last-wins.
type expected struct {
	hdr      tar.Header
	data     []byte
	identity int // entries with the same identity are one inode
}

func model(entries []entry) map[string]*expected {
	m := make(map[string]*expected)
	clean := func(n string) string { return strings.TrimPrefix(path.Clean("/"+n), "/") }
	for i, e := range entries {
		name := clean(e.hdr.Name)
		if name == "" {
			continue
		}
		var x *expected
		if e.hdr.Typeflag == tar.TypeLink {
			t := m[clean(e.hdr.Linkname)]
			x = &expected{hdr: t.hdr, data: t.data, identity: t.identity}
		} else {
			x = &expected{hdr: e.hdr, data: e.data, identity: i}
		}
		if x.hdr.ModTime.IsZero() {
			x.hdr.ModTime = defaultTime
		}
		if x.hdr.Typeflag != tar.TypeDir {
			for k := range m {
				if strings.HasPrefix(k, name+"/") {
					delete(m, k)
				}
			}
		}
		m[name] = x
	}
	return m
}

func xattrsOf(t *testing.T, p string) map[string]string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	m := make(map[string]string)
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		m[name] = string(v[:vn])
	}
	return m
}

// compareTree checks the mounted tree against the tar, entry by entry.
func compareTree(t *testing.T, root string, entries []entry, implied map[string]bool, impliedTime time.Time) {
	t.Helper()
	want := model(entries)
	inodeOf := make(map[int]uint64)
	for name, x := range want {
		p := filepath.Join(root, name)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		h := &x.hdr
		var typ uint32
		switch h.Typeflag {
		case tar.TypeReg:
			typ = unix.S_IFREG
		case tar.TypeDir:
			typ = unix.S_IFDIR
		case tar.TypeSymlink:
			typ = unix.S_IFLNK
		case tar.TypeChar:
			typ = unix.S_IFCHR
		case tar.TypeBlock:
			typ = unix.S_IFBLK
		case tar.TypeFifo:
			typ = unix.S_IFIFO
		}
		if st.Mode&unix.S_IFMT != typ {
			t.Errorf("%s: type %o, want %o", name, st.Mode&unix.S_IFMT, typ)
			continue
		}
		perm := uint32(h.Mode) & 0o7777
		if typ == unix.S_IFLNK {
			perm = 0o777
		}
		if st.Mode&0o7777 != perm {
			t.Errorf("%s: mode %o, want %o", name, st.Mode&0o7777, perm)
		}
		if int(st.Uid) != h.Uid || int(st.Gid) != h.Gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, h.Uid, h.Gid)
		}
		mt := time.Unix(st.Mtim.Unix())
		if !mt.Equal(h.ModTime) {
			t.Errorf("%s: mtime %v, want %v", name, mt, h.ModTime)
		}
		if !h.ChangeTime.IsZero() && !time.Unix(st.Ctim.Unix()).Equal(h.ChangeTime) {
			t.Errorf("%s: ctime %v, want %v", name, time.Unix(st.Ctim.Unix()), h.ChangeTime)
		}
		if !h.AccessTime.IsZero() && !time.Unix(st.Atim.Unix()).Equal(h.AccessTime) {
			t.Errorf("%s: atime %v, want %v", name, time.Unix(st.Atim.Unix()), h.AccessTime)
		}
		switch typ {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if sha256.Sum256(b) != sha256.Sum256(x.data) {
				t.Errorf("%s: content differs (%d bytes, want %d)", name, len(b), len(x.data))
			}
		case unix.S_IFLNK:
			if l, err := os.Readlink(p); err != nil || l != h.Linkname {
				t.Errorf("%s: link %q (%v), want %q", name, l, err, h.Linkname)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if unix.Major(st.Rdev) != uint32(h.Devmajor) || unix.Minor(st.Rdev) != uint32(h.Devminor) {
				t.Errorf("%s: device %d:%d, want %d:%d", name, unix.Major(st.Rdev), unix.Minor(st.Rdev), h.Devmajor, h.Devminor)
			}
		}
		wx := make(map[string]string)
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				wx[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
			}
		}
		if gx := xattrsOf(t, p); !equalMaps(gx, wx) {
			t.Errorf("%s: xattrs %q, want %q", name, keys(gx), keys(wx))
		}
		if ino, ok := inodeOf[x.identity]; ok && ino != st.Ino {
			t.Errorf("%s: inode %d, want %d (hard link)", name, st.Ino, ino)
		}
		inodeOf[x.identity] = st.Ino
	}
	// Every hard-link group has its own inode.
	seen := make(map[uint64]int)
	for id, ino := range inodeOf {
		if other, ok := seen[ino]; ok {
			t.Errorf("entries %d and %d share inode %d", id, other, ino)
		}
		seen[ino] = id
	}
	// Nothing else is in the tree but lost+found and the implied directories.
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || rel == "lost+found" || want[rel] != nil {
			return nil
		}
		if !implied[rel] {
			t.Errorf("unexpected %s in the image", rel)
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode != unix.S_IFDIR|0o755 || st.Uid != 0 || st.Gid != 0 || !time.Unix(st.Mtim.Unix()).Equal(impliedTime) {
			t.Errorf("implied %s: mode %o owner %d:%d mtime %v, want dir 0755 0:0 %v", rel, st.Mode, st.Uid, st.Gid, time.Unix(st.Mtim.Unix()), impliedTime)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func TestMountedTreeMatchesTar(t *testing.T) {
	entries := richEntries()
	implied := map[string]bool{"usr": true, "usr/lib": true, "dev": true, "run": true, "names": true, "implied": true, "implied/deeper": true, "dup": true}
	for _, tc := range []struct {
		name string
		opts []ext4.Option
	}{
		{"plain", nil},
		{"inline", []ext4.Option{ext4.WithInlineData()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, _ := build(t, makeTar(t, entries), tc.opts...)
			requireClean(t, img)
			root := mountImage(t, img)
			compareTree(t, root, entries, implied, defaultTime)
		})
	}
}

func TestMountedWhiteouts(t *testing.T) {
	entries := []entry{
		dir("a/", 0o755),
		file("a/.wh..wh..opq", 0o644, nil),
		file("a/kept", 0o644, []byte("kept")),
		file(".wh.gone", 0o644, nil),
		file("b/file", 0o644, randBytes(1, 10000)),
		file("b/.wh.file", 0o644, nil),
		// A whiteout and then entries below the same name: an opaque directory.
		dir("c/", 0o755),
		file("c/old", 0o644, []byte("old")),
		file(".wh.c", 0o644, nil),
		file("c/new", 0o644, []byte("new")),
	}
	img, _ := build(t, makeTar(t, entries), ext4.WithConvertWhiteouts())
	requireClean(t, img)
	root := mountImage(t, img)
	if x := xattrsOf(t, filepath.Join(root, "a")); x["trusted.overlay.opaque"] != "y" {
		t.Errorf("a: xattrs %q, want trusted.overlay.opaque=y", x)
	}
	for _, n := range []string{"gone", "b/file"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, n), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want a 0:0 character device", n, st.Mode, st.Rdev)
		}
	}
	if x := xattrsOf(t, filepath.Join(root, "c")); x["trusted.overlay.opaque"] != "y" {
		t.Errorf("c: xattrs %q, want trusted.overlay.opaque=y", x)
	}
	if _, err := os.Lstat(filepath.Join(root, "c", "old")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("c/old survived the whiteout of c: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "c", "new")); err != nil || string(b) != "new" {
		t.Errorf("c/new = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, ".wh.gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf(".wh.gone exists in the image: %v", err)
	}
}

// TestMountedSparseFromGNUTar builds images of sparse files archived by GNU tar in its
// GNU and PAX sparse formats: the holes stay holes and the content is intact.
func TestMountedSparseFromGNUTar(t *testing.T) {
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("GNU tar not installed")
	}
	src := t.TempDir()
	sparse := filepath.Join(src, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 64<<20)
	for _, off := range []int64{0, 10 << 20, 64<<20 - 5000} {
		d := randBytes(uint64(off), 5000)
		copy(want[off:], d)
		if _, err := f.WriteAt(d, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	for _, format := range [][]string{{"--format=gnu"}, {"--format=posix"}, {"--format=posix", "--sparse-version=0.1"}} {
		t.Run(strings.Join(format, " "), func(t *testing.T) {
			tp := filepath.Join(t.TempDir(), "sparse.tar")
			args := append([]string{"--sparse", "-C", src, "-cf", tp}, format...)
			if out, err := exec.Command(gnutar, append(args, "sparse")...).CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, out)
			}
			tb, err := os.ReadFile(tp)
			if err != nil {
				t.Fatal(err)
			}
			if len(tb) > 1<<20 {
				t.Fatalf("GNU tar wrote %d bytes: not a sparse archive", len(tb))
			}
			img, _ := build(t, tb)
			requireClean(t, img)
			root := mountImage(t, img)
			p := filepath.Join(root, "sparse")
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatal("content differs")
			}
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 > 64<<10 {
				t.Errorf("%d bytes allocated for 15000 bytes of data: holes were filled", st.Blocks*512)
			}
		})
	}
}

// TestMountedLibarchiveXattrs reads attributes recorded the way bsdtar does.
func TestMountedLibarchiveXattrs(t *testing.T) {
	e := file("f", 0o644, []byte("x"))
	e.hdr.PAXRecords = map[string]string{
		"LIBARCHIVE.xattr.user.lib":        "aGVsbG8", // "hello", base64 without padding
		"LIBARCHIVE.xattr.user.sp%20ace":   "dw==",    // "w"
		"LIBARCHIVE.xattr.user.both":       "bGli",    // SCHILY wins
		"SCHILY.xattr.user.both":           "schily",
		"LIBARCHIVE.xattr.user.not-base64": "!!",
	}
	img, _ := build(t, makeTar(t, []entry{e}))
	requireClean(t, img)
	root := mountImage(t, img)
	got := xattrsOf(t, filepath.Join(root, "f"))
	want := map[string]string{"user.lib": "hello", "user.sp ace": "w", "user.both": "schily"}
	if !equalMaps(got, want) {
		t.Fatalf("xattrs %q, want %q", got, want)
	}
}

// TestMountedLargeXattrs covers values too large for the inode and the attribute block,
// which native mode keeps in inodes of their own (the ea_inode feature), up to
// XATTR_SIZE_MAX, also after the file holding them is replaced.
func TestMountedLargeXattrs(t *testing.T) {
	big := func(seed uint64, n int) string { return string(randBytes(seed, n)) }
	f := file("f", 0o644, []byte("x"))
	f.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.a":     big(1, 20000),
		"SCHILY.xattr.user.b":     big(2, 5000),
		"SCHILY.xattr.user.c":     big(3, 5000),
		"SCHILY.xattr.user.small": "s",
	}
	d := dir("d/", 0o755)
	d.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.max": big(4, 65536)}
	gone := file("gone", 0o644, nil)
	gone.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.x": big(5, 30000)}
	entries := []entry{f, d, gone, file("d/.wh..wh..opq", 0o644, nil), file("gone", 0o644, []byte("replaced"))}
	img, _ := build(t, makeTar(t, entries), ext4.WithConvertWhiteouts())
	requireClean(t, img)
	root := mountImage(t, img)
	want := map[string]string{"user.a": big(1, 20000), "user.b": big(2, 5000), "user.c": big(3, 5000), "user.small": "s"}
	if got := xattrsOf(t, filepath.Join(root, "f")); !equalMaps(got, want) {
		t.Errorf("f: xattrs %q, want %q", keys(got), keys(want))
	}
	want = map[string]string{"trusted.max": big(4, 65536), "trusted.overlay.opaque": "y"}
	if got := xattrsOf(t, filepath.Join(root, "d")); !equalMaps(got, want) {
		t.Errorf("d: xattrs %q, want %q", keys(got), keys(want))
	}
	if got := xattrsOf(t, filepath.Join(root, "gone")); len(got) != 0 {
		t.Errorf("replaced file kept xattrs %q", keys(got))
	}
}
