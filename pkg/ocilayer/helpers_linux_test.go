package ocilayer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one entry of a tar built in code.
type ent struct {
	hdr  tar.Header
	body string
}

var epoch = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func file(name, body string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}, body: body}
}

func dir(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: epoch}}
}

// layer builds a PAX tar of the entries.
func layer(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("building layer: header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("building layer: body %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// node is what tree records about one file.
type node struct {
	Kind    uint32
	Mode    uint32
	UID     uint32
	GID     uint32
	Size    int64
	Sum     [32]byte
	Target  string
	Rdev    uint64
	Mtime   int64
	Xattrs  string
	Inode   uint64 `json:"-"`
	IsWhite bool
}

func (n node) String() string {
	return fmt.Sprintf("kind=%#o mode=%#o uid=%d gid=%d size=%d sum=%x target=%q rdev=%d mtime=%d xattrs=%q",
		n.Kind, n.Mode, n.UID, n.GID, n.Size, n.Sum[:4], n.Target, n.Rdev, n.Mtime, n.Xattrs)
}

// tree records everything below dir, keyed by slash-separated relative path.
// The root itself is left out.
func tree(t testing.TB, dir string) map[string]node {
	t.Helper()
	m := make(map[string]node)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{
			Kind: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
			Rdev: uint64(st.Rdev), Mtime: st.Mtim.Nano(), Inode: st.Ino,
		}
		switch n.Kind {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.Size, n.Sum = int64(len(b)), sha256.Sum256(b)
		case unix.S_IFLNK:
			n.Target, _ = os.Readlink(p)
		}
		x, err := listXattrs(p)
		if err != nil {
			return err
		}
		var kv []string
		for k, v := range x {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		n.Xattrs = strings.Join(kv, ",")
		m[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return m
}

// dumpTree logs a tree, for failing filesystem tests.
func dumpTree(t testing.TB, m map[string]node) {
	t.Helper()
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("  %s: %v", k, m[k])
	}
}

// compareTrees reports differences between got and want, ignoring inode numbers.
func compareTrees(t testing.TB, got, want map[string]node) bool {
	t.Helper()
	ok := true
	for k, w := range want {
		g, found := got[k]
		w.Inode, g.Inode = 0, 0
		switch {
		case !found:
			t.Errorf("%s: missing, want %v", k, w)
			ok = false
		case g != w:
			t.Errorf("%s:\n got %v\nwant %v", k, g, w)
			ok = false
		}
	}
	for k, g := range got {
		if _, found := want[k]; !found {
			t.Errorf("%s: unexpected %v", k, g)
			ok = false
		}
	}
	return ok
}

// sandbox is a root directory to apply into, next to a sentinel directory
// that no layer may change.
type sandbox struct {
	base, root, outside string
	before              map[string]node
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.root, s.outside, filepath.Join(s.outside, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"secret": "do not touch", "dir/inner": "nor this"} {
		if err := os.WriteFile(filepath.Join(s.outside, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("secret", filepath.Join(s.outside, "link")); err != nil {
		t.Fatal(err)
	}
	s.before = s.snapshot(t)
	return s
}

// snapshot records the sentinel and the names next to root.
func (s *sandbox) snapshot(t testing.TB) map[string]node {
	t.Helper()
	m := tree(t, s.outside)
	ents, err := os.ReadDir(s.base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		m["../"+e.Name()] = node{}
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.outside, &st); err != nil {
		t.Fatal(err)
	}
	m["."] = node{Mode: st.Mode, Mtime: st.Mtim.Nano(), UID: st.Uid, GID: st.Gid}
	return m
}

// check fails the test if anything outside root changed.
func (s *sandbox) check(t testing.TB) {
	t.Helper()
	if !compareTrees(t, s.snapshot(t), s.before) {
		t.Errorf("the sentinel directory %s outside root changed", s.outside)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
