package ocilayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// errAny marks a breakout case that may either fail or succeed inside root.
var errAny = errors.New("any outcome")

func TestBreakouts(t *testing.T) {
	// Cases get the sandbox to name the real directory outside root.
	cases := []struct {
		name    string
		ents    func(s *sandbox) []ent
		wantErr error // nil: must succeed; errAny: may fail
		check   func(t *testing.T, s *sandbox)
	}{
		{
			name:  "symlink to slash then file through it",
			ents:  func(s *sandbox) []ent { return []ent{symlink("a", "/"), file("a/x", "in root")} },
			check: wantFile("x", "in root"),
		},
		{
			name:  "symlink to ../.. then file through it",
			ents:  func(s *sandbox) []ent { return []ent{symlink("a", "../.."), file("a/x", "in root")} },
			check: wantFile("x", "in root"),
		},
		{
			name: "absolute symlink to the sentinel then file through it",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("a", s.outside), file("a/secret", "overwritten")}
			},
			wantErr: errAny,
		},
		{
			name: "absolute symlink whose target exists inside root",
			ents: func(s *sandbox) []ent {
				return []ent{dir(strings.TrimPrefix(s.outside, "/")), symlink("a", s.outside), file("a/secret", "inside")}
			},
			check: func(t *testing.T, s *sandbox) {
				wantFile(strings.TrimPrefix(s.outside, "/")+"/secret", "inside")(t, s)
			},
		},
		{
			name: "relative symlink to the sentinel then file through it",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("a", "../outside"), file("a/secret", "overwritten")}
			},
			wantErr: errAny,
		},
		{
			name: "chained symlinks",
			ents: func(s *sandbox) []ent {
				return []ent{dir("d"), symlink("d/b", "../../../.."), symlink("a", "d/b"), symlink("c", "a/outside"), file("c/secret", "x")}
			},
			wantErr: errAny,
		},
		{
			name: "symlink then file of the same name replaces the symlink",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("a", filepath.Join(s.outside, "secret")), file("a", "replaced")}
			},
			check: wantFile("a", "replaced"),
		},
		{
			name: "directory entry over a symlink",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("a", s.outside), dir("a"), file("a/secret", "inside")}
			},
			check: wantFile("a/secret", "inside"),
		},
		{
			name:    "hard link to a relative path outside",
			ents:    func(s *sandbox) []ent { return []ent{hardlink("l", "../outside/secret")} },
			wantErr: ErrInsecurePath,
		},
		{
			name:    "hard link to an absolute path outside",
			ents:    func(s *sandbox) []ent { return []ent{hardlink("l", filepath.Join(s.outside, "secret"))} },
			wantErr: ErrInvalidEntry,
		},
		{
			name: "hard link through a symlink to the sentinel",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", s.outside), hardlink("l", "s/secret")}
			},
			wantErr: ErrInvalidEntry,
		},
		{
			name: "hard link through a symlink to slash stays in root",
			ents: func(s *sandbox) []ent {
				return []ent{file("f", "data"), symlink("s", "/"), hardlink("l", "s/f")}
			},
			check: func(t *testing.T, s *sandbox) {
				wantFile("l", "data")(t, s)
				wantSameFile(t, filepath.Join(s.root, "f"), filepath.Join(s.root, "l"))
			},
		},
		{
			name:    "hard link to a directory",
			ents:    func(s *sandbox) []ent { return []ent{dir("d"), hardlink("l", "d")} },
			wantErr: ErrInvalidEntry,
		},
		{
			name: "hard link to a symlink links the symlink",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", filepath.Join(s.outside, "secret")), hardlink("l", "s")}
			},
			check: func(t *testing.T, s *sandbox) {
				if got, err := os.Readlink(filepath.Join(s.root, "l")); err != nil || got != filepath.Join(s.outside, "secret") {
					t.Errorf("l: Readlink = %q, %v; want the symlink itself", got, err)
				}
			},
		},
		{
			name:    "dotdot name",
			ents:    func(s *sandbox) []ent { return []ent{file("../outside/secret", "x")} },
			wantErr: ErrInsecurePath,
		},
		{
			name:    "dotdot after cleaning",
			ents:    func(s *sandbox) []ent { return []ent{file("a/../../outside/secret", "x")} },
			wantErr: ErrInsecurePath,
		},
		{
			name:    "absolute dotdot name",
			ents:    func(s *sandbox) []ent { return []ent{file("/../outside/secret", "x")} },
			wantErr: ErrInsecurePath,
		},
		{
			name:  "absolute name is taken inside root",
			ents:  func(s *sandbox) []ent { return []ent{file("/etc/x", "x")} },
			check: wantFile("etc/x", "x"),
		},
		{
			name:    "whiteout of ../x",
			ents:    func(s *sandbox) []ent { return []ent{file("../outside/.wh.secret", "")} },
			wantErr: ErrInsecurePath,
		},
		{
			name:    "whiteout of dotdot",
			ents:    func(s *sandbox) []ent { return []ent{file(".wh...", "")} },
			wantErr: ErrInsecurePath,
		},
		{
			name: "whiteout through an absolute symlink",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", s.outside), file("s/.wh.secret", ""), file("s/.wh.dir", "")}
			},
			wantErr: errAny,
		},
		{
			name: "whiteout through a relative symlink",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", "../outside"), file("s/.wh.secret", "")}
			},
			wantErr: errAny,
		},
		{
			name: "whiteout of a symlink removes the symlink only",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", s.outside), file(".wh.s", "")}
			},
			check: wantMissing("s"),
		},
		{
			name: "whiteout through a symlink inside root",
			ents: func(s *sandbox) []ent {
				return []ent{dir("d"), file("d/f", "f"), file("d/g", "g"), symlink("s", "/d"), file("s/.wh.f", "")}
			},
			check: func(t *testing.T, s *sandbox) {
				wantMissing("d/f")(t, s)
				wantFile("d/g", "g")(t, s)
			},
		},
		{
			name: "opaque marker through a symlink inside root",
			ents: func(s *sandbox) []ent {
				return []ent{dir("d"), file("d/f", "f"), symlink("s", "../d"), file("s/.wh..wh..opq", ""), file("s/new", "n")}
			},
			// The marker's directory is s (resolving to d), so d/f, written
			// under another name, does not count as this layer's.
			check: func(t *testing.T, s *sandbox) {
				wantMissing("d/f")(t, s)
				wantFile("d/new", "n")(t, s)
			},
		},
		{
			name: "opaque marker in a symlinked directory",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", s.outside), file("s/.wh..wh..opq", "")}
			},
			wantErr: errAny,
		},
		{
			name: "opaque marker through a symlink to slash",
			ents: func(s *sandbox) []ent {
				return []ent{file("keep", "k"), symlink("s", "/"), file("s/.wh..wh..opq", "")}
			},
			// "s" resolves to root, so root is the opaque directory: everything
			// in it goes, which is allowed as it stays inside root.
		},
		{
			name: "device through a symlink",
			ents: func(s *sandbox) []ent {
				return []ent{symlink("s", s.outside), {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "s/fifo", Mode: 0o644}}}
			},
			wantErr: errAny,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			// Each entry is a layer of its own: the Validator refuses writes below a
			// symlink of the same layer, so breakouts go through the symlinks lower
			// layers left in the tree, which Apply must resolve inside root.
			var err error
			for _, e := range tc.ents(s) {
				if _, err = Apply(context.Background(), s.root, bytes.NewReader(layer(t, e)), WithSkipDevices(), WithoutOwnership()); err != nil {
					break
				}
			}
			switch {
			case tc.wantErr == errAny:
				t.Logf("Apply: %v", err)
			case tc.wantErr == nil && err != nil:
				t.Errorf("Apply: %v; want success", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("Apply: %v; want %v", err, tc.wantErr)
			}
			var ee *EntryError
			if err != nil && !errors.As(err, &ee) {
				t.Errorf("Apply: %T %v; want *EntryError", err, err)
			}
			if tc.check != nil && err == nil {
				tc.check(t, s)
			}
			s.check(t)
			if t.Failed() {
				dumpTree(t, tree(t, s.root))
			}
		})
	}
}

func wantFile(name, body string) func(t *testing.T, s *sandbox) {
	return func(t *testing.T, s *sandbox) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(s.root, name))
		if err != nil || string(got) != body {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, body)
		}
	}
}

func wantMissing(name string) func(t *testing.T, s *sandbox) {
	return func(t *testing.T, s *sandbox) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(s.root, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: Lstat = %v; want not exist", name, err)
		}
	}
}

func wantSameFile(t *testing.T, a, b string) {
	t.Helper()
	sa, err1 := os.Lstat(a)
	sb, err2 := os.Lstat(b)
	if err1 != nil || err2 != nil || !os.SameFile(sa, sb) {
		t.Errorf("%s and %s are not one file (%v, %v)", a, b, err1, err2)
	}
}

func TestApplyErrors(t *testing.T) {
	cases := []struct {
		name    string
		ents    []ent
		wantErr error
		wantOp  string
	}{
		{"unknown type", []ent{{hdr: tar.Header{Typeflag: 'Z', Name: "z"}}}, ErrUnsupported, ""},
		{"missing hard link target", []ent{hardlink("l", "nothere")}, ErrInvalidEntry, "link"},
		{"root entry not a directory", []ent{file(".", "")}, ErrInvalidEntry, ""},
		{"whiteout of nothing", []ent{file(".wh.", "")}, ErrInvalidEntry, ""},
		{"whiteout of the parent", []ent{file("d/.wh...", "")}, ErrInsecurePath, ""},
		{"write below a symlink of the same layer", []ent{symlink("s", "/"), file("s/x", "")}, ErrInvalidEntry, ""},
		{"overlayfs attribute", []ent{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}}}}, ErrInvalidEntry, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			_, err := Apply(context.Background(), root, bytes.NewReader(layer(t, tc.ents...)), WithoutOwnership())
			var ee *EntryError
			if !errors.Is(err, tc.wantErr) || !errors.As(err, &ee) {
				t.Fatalf("Apply: %v; want *EntryError matching %v", err, tc.wantErr)
			}
			var off int64
			if n := len(tc.ents); n > 1 {
				off = int64(len(layer(t, tc.ents[:n-1]...))) - 1024 // the bad entry follows the others
			}
			if ee.Entry != tc.ents[len(tc.ents)-1].hdr.Name || ee.Op != tc.wantOp || ee.Offset != off {
				t.Errorf("EntryError = %+v; want entry %q, op %q, offset %d", ee, tc.ents[len(tc.ents)-1].hdr.Name, tc.wantOp, off)
			}
		})
	}
	t.Run("PAX sparse file", func(t *testing.T) {
		// archive/tar's writer drops GNU.sparse records, so write look-alike
		// keys and rename them in the record block, which no checksum covers.
		b := layer(t, ent{
			hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sparse", Size: 1, PAXRecords: map[string]string{
				"XNU.sparse.numblocks": "1", "XNU.sparse.map": "1099511627775,1", "XNU.sparse.size": "1099511627776",
			}},
			body: "x",
		})
		b = bytes.ReplaceAll(b, []byte("XNU.sparse."), []byte("GNU.sparse."))
		root := t.TempDir()
		_, err := Apply(context.Background(), root, bytes.NewReader(b), WithoutOwnership())
		var ee *EntryError
		if !errors.Is(err, ErrTooLarge) || !errors.As(err, &ee) || ee.Entry != "sparse" {
			t.Errorf("Apply of a 1 TiB sparse file: %v; want *EntryError matching ErrTooLarge", err)
		}
		if _, err := os.Lstat(filepath.Join(root, "sparse")); err == nil {
			t.Error("the sparse file was created")
		}
	})
	t.Run("offset", func(t *testing.T) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o644, Size: 600})
		tw.Write(make([]byte, 600))
		tw.Flush()
		want := int64(buf.Len())
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "l", Linkname: "../x"})
		tw.Close()
		_, err := Apply(context.Background(), t.TempDir(), &buf, WithoutOwnership())
		var ee *EntryError
		if !errors.As(err, &ee) || !errors.Is(err, ErrInsecurePath) || ee.Offset != want || ee.Entry != "l" {
			t.Errorf("Apply: %v; want *EntryError for l at offset %d matching ErrInsecurePath", err, want)
		}
	})
	t.Run("global PAX header", func(t *testing.T) {
		root := t.TempDir()
		l := layer(t, ent{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "made by git archive"}}}, file("a", "a"))
		if _, err := Apply(context.Background(), root, bytes.NewReader(l), WithoutOwnership()); err != nil {
			t.Fatalf("Apply of a layer with a global header: %v", err)
		}
		wantFile("a", "a")(t, &sandbox{root: root})
	})
	t.Run("standard classes", func(t *testing.T) {
		_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(layer(t, file("../x", ""))))
		if !errors.Is(err, tar.ErrInsecurePath) {
			t.Errorf("Apply of ../x: %v; want a match for tar.ErrInsecurePath", err)
		}
		_, err = Apply(context.Background(), t.TempDir(), bytes.NewReader(layer(t, ent{hdr: tar.Header{Typeflag: 'Z', Name: "z"}})))
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Apply of an unknown type: %v; want a match for errors.ErrUnsupported", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		b := layer(t, file("a", strings.Repeat("x", 2000)))
		_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(b[:1500]), WithoutOwnership())
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Apply of a truncated layer: %v; want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Apply(ctx, t.TempDir(), bytes.NewReader(layer(t, file("a", "x"))))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Apply with a cancelled context: %v", err)
		}
	})
}

// requireRoot skips a test that needs to chown and mknod, saying why.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_CHOWN, CAP_MKNOD, trusted xattrs); run the tests as root")
	}
}

var capNetBind = string([]byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func withMeta(e ent, mode int64, uid, gid int, mtime time.Time, xattrs map[string]string) ent {
	e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime = mode, uid, gid, mtime
	if xattrs != nil {
		e.hdr.PAXRecords = make(map[string]string)
		for k, v := range xattrs {
			e.hdr.PAXRecords[paxXattr+k] = v
		}
	}
	return e
}

var (
	t1 = time.Date(2021, 5, 6, 7, 8, 9, 123456789, time.UTC)
	t2 = time.Date(2022, 6, 7, 8, 9, 10, 0, time.UTC)
)

func baseLayer(t testing.TB) []byte {
	return layer(t,
		withMeta(dir("./"), 0o755, 0, 0, t1, nil),
		withMeta(dir("etc/"), 0o755, 0, 0, t1, nil),
		withMeta(file("etc/passwd", "root:x:0:0\n"), 0o644, 10, 20, t1, nil),
		withMeta(dir("bin/"), 0o755, 0, 0, t1, nil),
		withMeta(file("bin/sh", "#!shell"), 0o4755, 0, 0, t1, map[string]string{"security.capability": capNetBind}),
		hardlink("bin/link", "bin/sh"),
		withMeta(dir("usr/"), 0o755, 0, 0, t1, map[string]string{"user.foo": "bar", "trusted.t": "1"}),
		withMeta(dir("usr/lib/"), 0o755, 0, 0, t1, nil),
		withMeta(file("usr/lib/a", "a"), 0o600, 1, 1, t1, nil),
		withMeta(file("usr/lib/b", "b"), 0o600, 1, 1, t1, nil),
		withMeta(dir("usr/lib/sub/"), 0o755, 0, 0, t1, nil),
		withMeta(file("usr/lib/sub/c", "c"), 0o600, 1, 1, t1, nil),
		withMeta(dir("var/cache/"), 0o755, 0, 0, t1, nil),
		withMeta(file("var/cache/x", "x"), 0o644, 0, 0, t1, nil),
		withMeta(dir("tmp/"), 0o1777, 0, 0, t1, nil),
		withMeta(symlink("lib", "usr/lib"), 0o777, 5, 6, t1, map[string]string{"trusted.sym": "s"}),
		withMeta(dir("dev/"), 0o755, 0, 0, t1, nil),
		withMeta(ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}}, 0o666, 0, 0, t1, nil),
		withMeta(ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"}}, 0o640, 0, 0, t1, nil),
	)
}

func TestApplyTwoLayers(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	ctx := context.Background()
	n, err := Apply(ctx, root, bytes.NewReader(baseLayer(t)))
	if err != nil {
		t.Fatalf("Apply base: %v", err)
	}
	if want := int64(len("root:x:0:0\n#!shellabcx")); n != want {
		t.Errorf("Apply base wrote %d bytes; want %d", n, want)
	}
	p := func(name string) string { return filepath.Join(root, name) }
	wantSameFile(t, p("bin/sh"), p("bin/link"))
	var st unix.Stat_t
	for _, name := range []string{".", "etc", "usr/lib", "bin"} {
		if err := unix.Lstat(p(name), &st); err != nil || st.Mtim.Nano() != t1.UnixNano() {
			t.Errorf("%s: mtime = %v, %v; want %v", name, time.Unix(0, st.Mtim.Nano()), err, t1)
		}
	}

	top := layer(t,
		file("etc/.wh.passwd", ""),
		withMeta(file("usr/lib/new", "new"), 0o640, 0, 0, t2, nil),
		file("usr/lib/.wh..wh..opq", ""),
		withMeta(file("usr/lib/after", "after"), 0o640, 0, 0, t2, nil),
		withMeta(file("bin/sh", "#!new shell"), 0o755, 0, 0, t2, nil),
		withMeta(file("var/cache", "now a file"), 0o644, 0, 0, t2, nil),
		withMeta(dir("usr/"), 0o700, 3, 4, t2, map[string]string{"user.foo": "baz"}),
		withMeta(file("dup", "first"), 0o644, 0, 0, t2, nil),
		withMeta(file("dup", "second"), 0o600, 0, 0, t2, nil),
	)
	if _, err := Apply(ctx, root, bytes.NewReader(top)); err != nil {
		t.Fatalf("Apply top: %v", err)
	}
	got := tree(t, root)
	x := func(pairs ...string) string { return strings.Join(pairs, ",") }
	want := map[string]node{
		"etc":           {Kind: unix.S_IFDIR, Mode: 0o755, Mtime: got["etc"].Mtime}, // changed by the top layer
		"bin":           {Kind: unix.S_IFDIR, Mode: 0o755, Mtime: got["bin"].Mtime}, // changed by the top layer
		"bin/sh":        reg("#!new shell", 0o755, 0, 0, t2, ""),
		"bin/link":      reg("#!shell", 0o4755, 0, 0, t1, x("security.capability="+capNetBind)),
		"usr":           {Kind: unix.S_IFDIR, Mode: 0o700, UID: 3, GID: 4, Mtime: t2.UnixNano(), Xattrs: x("trusted.t=1", "user.foo=baz")},
		"usr/lib":       {Kind: unix.S_IFDIR, Mode: 0o755, Mtime: got["usr/lib"].Mtime}, // changed by the top layer
		"usr/lib/new":   reg("new", 0o640, 0, 0, t2, ""),
		"usr/lib/after": reg("after", 0o640, 0, 0, t2, ""),
		"var":           {Kind: unix.S_IFDIR, Mode: 0o755, Mtime: got["var"].Mtime}, // implicit parent: time of creation
		"var/cache":     reg("now a file", 0o644, 0, 0, t2, ""),
		"tmp":           {Kind: unix.S_IFDIR, Mode: 0o1777, Mtime: t1.UnixNano()},
		"lib":           {Kind: unix.S_IFLNK, Mode: 0o777, UID: 5, GID: 6, Target: "usr/lib", Mtime: t1.UnixNano(), Xattrs: "trusted.sym=s"},
		"dev":           {Kind: unix.S_IFDIR, Mode: 0o755, Mtime: got["dev"].Mtime},
		"dev/null":      {Kind: unix.S_IFCHR, Mode: 0o666, Rdev: unix.Mkdev(1, 3), Mtime: t1.UnixNano()},
		"fifo":          {Kind: unix.S_IFIFO, Mode: 0o640, Mtime: t1.UnixNano()},
		"dup":           reg("second", 0o600, 0, 0, t2, ""),
	}
	if !compareTrees(t, got, want) {
		dumpTree(t, got)
	}
}

func reg(body string, mode uint32, uid, gid uint32, mtime time.Time, xattrs string) node {
	b := []byte(body)
	return node{Kind: unix.S_IFREG, Mode: mode, UID: uid, GID: gid, Size: int64(len(b)), Sum: sha256Sum(b), Mtime: mtime.UnixNano(), Xattrs: xattrs}
}

// TestApplyReplacedDirectories checks that entries after a directory was
// replaced or removed within the same layer resolve their names again: they go
// through the new symlink or into a new directory, never into the directory
// that was unlinked.
func TestApplyReplacedDirectories(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	lower := layer(t,
		dir("b/"),
		dir("a/"),
		file("a/x", "x"),
		symlink("a", "b"), // replaces directory a
		dir("d/"),
		file("d/x", "x"),
	)
	if _, err := Apply(context.Background(), root, bytes.NewReader(lower)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	l := layer(t,
		file("a/y", "y"), // lands in b
		file(".wh.d", ""),
		file("d/y", "y"), // d made again, as an implicit parent
		dir("e/"),
		file("e/x", "x"),
		file("e", "now a file"),
		dir("f/"),
		dir("f/g/"),
		file("f/g/x", "x"),
		file("f/.wh..wh..opq", ""),
		file("f/g/y", "y"),
		hardlink("h", "a/y"),
		dir("i/"),
		file("i/x", "x"),
		hardlink("i", "a/y"), // replaces directory i
	)
	if _, err := Apply(context.Background(), root, bytes.NewReader(l)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got := tree(t, root)
	want := map[string]string{"a": "link", "b/y": "y", "d/y": "y", "e": "now a file", "f/g/x": "x", "f/g/y": "y", "h": "y", "i": "y"}
	for name, body := range want {
		n, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: missing", name)
		case body == "link":
			if n.Kind != unix.S_IFLNK {
				t.Errorf("%s: kind %o; want a symlink", name, n.Kind)
			}
		case n.Kind != unix.S_IFREG || n.Sum != sha256Sum([]byte(body)):
			t.Errorf("%s: %v; want a file holding %q", name, n, body)
		}
	}
	for _, name := range []string{"a/x", "b/x", "d/x", "e/x", "i/x"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s: present; want removed", name)
		}
	}
	if t.Failed() {
		dumpTree(t, got)
	}
}

// TestApplyLargeFile checks a file larger than the copy buffer and above the
// early-writeback size: several chunks, the last one short.
func TestApplyLargeFile(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	body := make([]byte, 2*copyBufferSize+12345)
	for i := range body {
		body[i] = byte(i*7 + i>>13)
	}
	n, err := Apply(context.Background(), root, bytes.NewReader(layer(t, file("big", string(body)), file("small", "s"))))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if want := int64(len(body) + 1); n != want {
		t.Errorf("Apply wrote %d bytes; want %d", n, want)
	}
	got, err := os.ReadFile(filepath.Join(root, "big"))
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("big: %d bytes, %v; want the %d bytes of the entry", len(got), err, len(body))
	}
}
