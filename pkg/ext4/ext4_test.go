package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"time"

	"github.com/hostcompute/hostcompute/pkg/ext4"
)

// entry is one tar entry of a test archive.
type entry struct {
	hdr  tar.Header
	data []byte
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func file(name string, mode int64, data []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

// defaultTime is the modification time of entries that do not set one.
var defaultTime = time.Unix(1700000000, 123456789)

// makeTar writes the entries as a PAX tar. Entries without a time get a fixed one.
func makeTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = defaultTime
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("tar data %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sparseish is a file of n blocks where every other block is zero: a hole in native
// mode. It needs n/2 extents.
func sparseish(blocks int) []byte {
	b := make([]byte, blocks*4096)
	for i := 0; i < blocks; i += 2 {
		copy(b[i*4096:], randBytes(uint64(i)+7, 4096))
	}
	return b
}

// richEntries covers every entry kind the package maps.
func richEntries() []entry {
	bigName := strings.Repeat("n", 255)
	withX := file("etc/xattrs", 0o640, []byte("attributes\n"))
	withX.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.small":          "v",
		"SCHILY.xattr.security.capability": string([]byte{1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
		"SCHILY.xattr.trusted.t":           "trusted value",
		"SCHILY.xattr.user.big":            string(randBytes(3, 3000)),
	}
	dirX := dir("etc/xdir/", 0o755)
	dirX.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.dir": strings.Repeat("d", 200)}
	owned := file("home/user/owned", 0o4750, []byte("setuid, high ids\n"))
	owned.hdr.Uid, owned.hdr.Gid = 100000, 70000
	old := file("old", 0o644, []byte("old times"))
	old.hdr.ModTime = time.Unix(86400*365, 5)
	old.hdr.AccessTime = time.Unix(86400*366, 0)
	old.hdr.ChangeTime = time.Unix(86400*367, 999)
	return []entry{
		dir("./", 0o755),
		dir("etc/", 0o755),
		file("etc/hostname", 0o644, []byte("box\n")),
		file("etc/empty", 0o600, nil),
		file("etc/inline136", 0o644, randBytes(1, 136)),
		file("etc/medium", 0o644, randBytes(2, 5000)),
		withX,
		dirX,
		dir("tmp/", 0o1777),
		dir("home/", 0o755),
		dir("home/user/", 0o700),
		owned,
		old,
		file("usr/lib/big", 0o755, randBytes(4, 3<<20+17)),
		file("usr/lib/holes", 0o644, append(make([]byte, 1<<20), append(randBytes(5, 10000), make([]byte, 1<<20)...)...)),
		file("usr/lib/deep-extents", 0o644, sparseish(2*1400)),
		symlink("usr/lib/fast", "big"),
		symlink("usr/lib/slow", strings.Repeat("long/", 40)+"target"),
		hardlink("usr/lib/big-link", "usr/lib/big"),
		hardlink("usr/lib/slow-link", "usr/lib/slow"),
		hardlink("usr/lib/fast-link", "usr/lib/fast"),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/big", Mode: 0o660, Devmajor: 259, Devminor: 70000}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}},
		file("names/"+bigName, 0o644, []byte("long name")),
		file("names/ünïcødé-日本語", 0o644, []byte("unicode")),
		file("implied/deeper/file", 0o644, []byte("parents not in the tar")),
		// Duplicates: the last one wins.
		file("dup/file", 0o644, randBytes(6, 70000)),
		file("dup/file", 0o600, randBytes(7, 9000)),
		file("dup/dir-then-file/inner", 0o644, []byte("gone")),
		file("dup/dir-then-file", 0o644, []byte("a file now")),
		file("dup/file-then-dir", 0o644, randBytes(8, 8192)),
		dir("dup/file-then-dir/", 0o711),
		file("dup/file-then-dir/inside", 0o644, []byte("x")),
	}
}

func writeTar(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// build builds an image of tarBytes into a new file and returns its path.
func build(t testing.TB, tarBytes []byte, opts ...ext4.Option) (string, *ext4.Result) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.ext4")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ext4.Build(context.Background(), f, bytes.NewReader(tarBytes), opts...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != res.Size {
		t.Fatalf("image is %d bytes, result says %d", st.Size(), res.Size)
	}
	return p, res
}

// e2fsck runs e2fsck -fn on the image and returns its output and exit code.
func e2fsck(t testing.TB, img string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("e2fsck")
	if err != nil {
		t.Skip("e2fsck not installed (Debian package e2fsprogs; scripts/install-deps.sh installs it)")
	}
	out, err := exec.Command(path, "-fn", img).CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func requireClean(t testing.TB, img string) {
	t.Helper()
	out, code := e2fsck(t, img)
	if code != 0 {
		t.Fatalf("e2fsck -fn exit %d:\n%s", code, out)
	}
}

func TestBuildCleanAllOptions(t *testing.T) {
	tb := makeTar(t, richEntries())
	for _, tc := range []struct {
		name string
		opts []ext4.Option
	}{
		{"plain", nil},
		{"inline", []ext4.Option{ext4.WithInlineData()}},
		{"maxsize", []ext4.Option{ext4.WithMaximumDiskSize(128 << 30)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, res := build(t, tb, tc.opts...)
			requireClean(t, img)
			if res.UUID == [16]byte{} {
				t.Error("native image has a zero UUID")
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	tb := makeTar(t, richEntries())
	a, ra := build(t, tb)
	b, rb := build(t, tb)
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ba, bb) {
		t.Fatal("two builds of the same tar differ")
	}
	if ra.UUID != rb.UUID {
		t.Fatal("UUIDs differ")
	}
	// Different content, same structure: different UUID.
	e := richEntries()
	e[2] = file("etc/hostname", 0o644, []byte("xxx\n"))
	_, rc := build(t, makeTar(t, e))
	if rc.UUID == ra.UUID {
		t.Error("different file data gives the same UUID")
	}
}

func TestDuplicatesLastWins(t *testing.T) {
	entries := []entry{
		file("f", 0o644, randBytes(1, 100000)),
		file("f", 0o644, randBytes(2, 5000)),
		file("d/x", 0o644, randBytes(3, 50000)),
		file("d", 0o644, []byte("file over dir")),
		symlink("s", strings.Repeat("t", 100)),
		symlink("s", strings.Repeat("u", 120)),
		file("g", 0o644, randBytes(4, 9000)),
		hardlink("h", "g"),
		file("g", 0o600, []byte("new g")),
		file("x", 0o644, randBytes(5, 9000)),
		hardlink("x", "g"),
	}
	for _, inline := range []bool{false, true} {
		var opts []ext4.Option
		if inline {
			opts = append(opts, ext4.WithInlineData())
		}
		img, res := build(t, makeTar(t, entries), opts...)
		requireClean(t, img)
		if res.FreeBlocks == 0 {
			t.Errorf("inline=%v: replaced data was not freed", inline)
		}
		// Freed blocks are zeroed: the first copy of f must be gone from the image.
		b, _ := os.ReadFile(img)
		if bytes.Contains(b, randBytes(1, 100000)[:4096]) || bytes.Contains(b, randBytes(3, 50000)[:4096]) {
			t.Errorf("inline=%v: data of a replaced file is still in the image", inline)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tar     []byte
		wantErr error
		entry   string
		offset  int64
	}{
		{"dotdot", makeTar(t, []entry{file("a", 0o644, []byte("x")), file("../escape", 0o644, []byte("x"))}), ext4.ErrInsecurePath, "../escape", 2048},
		{"symlink-parent", makeTar(t, []entry{symlink("a", "/outside"), file("a/file", 0o644, []byte("x"))}), ext4.ErrNotDir, "a/file", 1536},
		{"link-escape", makeTar(t, []entry{hardlink("l", "../../etc/passwd")}), ext4.ErrInsecurePath, "l", 0},
		{"link-missing", makeTar(t, []entry{hardlink("l", "nothing")}), ext4.ErrLinkTarget, "l", 0},
		{"link-dir", makeTar(t, []entry{dir("d/", 0o755), hardlink("l", "d")}), ext4.ErrLinkTarget, "l", 1536},
		{"xattr-too-big", makeTar(t, []entry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "x", PAXRecords: map[string]string{"SCHILY.xattr.user.huge": strings.Repeat("h", 70000)}}}}), ext4.ErrXattr, "x", 0},
		{"truncated", makeTar(t, []entry{file("a", 0o644, randBytes(1, 10000))})[:3000], ext4.ErrInvalidTar, "a", 0},
		{"lost+found", makeTar(t, []entry{file("lost+found", 0o644, nil)}), ext4.ErrConflict, "lost+found", 0},
		{"garbage", bytes.Repeat([]byte("not a tar "), 100), ext4.ErrInvalidTar, "", 0},
		// Issue 10: trusted.overlay.* xattrs from the tar reached the image (with
		// -overlay a member could make a directory opaque); ".wh.." and ".wh..." were
		// stored as plain files. The layer rules of pkg/ocilayer refuse both.
		{"overlay-opaque-xattr", makeTar(t, []entry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}}}}), ocilayer.ErrInvalidEntry, "d/", 0},
		{"overlay-redirect-xattr", makeTar(t, []entry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.overlay.redirect": "/x"}}}}), ext4.ErrInvalidTar, "f", 0},
		{"whiteout-dot", makeTar(t, []entry{file("d/.wh..", 0o644, nil)}), ext4.ErrInvalidTar, "d/.wh..", 0},
		{"whiteout-dotdot", makeTar(t, []entry{file("d/.wh...", 0o644, nil)}), ext4.ErrInsecurePath, "d/.wh...", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "image")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = ext4.Build(context.Background(), f, bytes.NewReader(tc.tar))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			var e *ext4.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *ext4.Error", err)
			}
			if e.Entry != tc.entry || e.Offset != tc.offset {
				t.Errorf("error names entry %q at %d, want %q at %d (%v)", e.Entry, e.Offset, tc.entry, tc.offset, err)
			}
			if st, _ := f.Stat(); st.Size() != 0 {
				t.Errorf("output left with %d bytes", st.Size())
			}
		})
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := os.Create(filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = ext4.Build(ctx, f, bytes.NewReader(makeTar(t, richEntries())))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestFileSystemSize(t *testing.T) {
	img, res := build(t, makeTar(t, []entry{file("a", 0o644, []byte("a"))}))
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := ext4.FileSystemSize(f)
	if err != nil || n != res.Size {
		t.Fatalf("FileSystemSize = %d, %v; want %d", n, err, res.Size)
	}
	if _, err := ext4.FileSystemSize(bytes.NewReader(make([]byte, 4096))); err == nil {
		t.Fatal("no error for a zeroed superblock")
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }
