//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/compress"
)

// ociEnt is one entry of a test layer: a directory (name ending in /), a file
// with body, a symlink (sym set), a hard link (hard set) or, for names whose last
// element starts with .wh., a whiteout.
type ociEnt struct {
	name, body, sym, hard string
}

func ociTar(t *testing.T, ents ...ociEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatPAX}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.sym != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.sym, 0o777
		case e.hard != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.hard
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ociTree lists the tree under root as "name" for files (with ":body"),
// "name/" for directories and "name -> target" for symlinks, sorted.
func ociTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			out = append(out, rel+"/")
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+" -> "+target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, rel+":"+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func wantTree(t *testing.T, root string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := ociTree(t, root); !slices.Equal(got, want) {
		t.Errorf("tree of %s:\n got %q\nwant %q", root, got, want)
	}
}

func TestOCIApplyTwoLayers(t *testing.T) {
	base := ociTar(t,
		ociEnt{name: "etc/"},
		ociEnt{name: "etc/a", body: "one"},
		ociEnt{name: "etc/b", body: "bee"},
		ociEnt{name: "etc/link", sym: "a"},
		ociEnt{name: "etc/hard", hard: "etc/a"},
		ociEnt{name: "d/"},
		ociEnt{name: "d/x", body: "x"},
		ociEnt{name: "d/sub/"},
		ociEnt{name: "d/sub/y", body: "y"},
		ociEnt{name: "gone/"},
		ociEnt{name: "gone/deep", body: "deep"},
	)
	top := ociTar(t,
		ociEnt{name: "etc/b", body: "replaced"},
		ociEnt{name: "etc/.wh.hard"},
		ociEnt{name: "d/z", body: "z"},
		ociEnt{name: "d/.wh..wh..opq"},
		ociEnt{name: ".wh.gone"},
		ociEnt{name: "new", body: "new"},
	)
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs") // created by apply
	file := writeFile(t, dir, "base.tar", base)

	r := hcs(t, nil, "ocilayer", "apply", "--no-ownership", "-f", file, root)
	wantCode(t, r, exitOK)
	re := regexp.MustCompile(`^applied [0-9.]+ B to ` + regexp.QuoteMeta(root) + ` in [0-9.]+m?s\n$`)
	if !re.MatchString(r.stdout) {
		t.Errorf("summary %q does not match %s", r.stdout, re)
	}
	if r.stderr != "" {
		t.Errorf("stderr: %q", r.stderr)
	}
	wantTree(t, root, "etc/", "etc/a:one", "etc/b:bee", "etc/link -> a", "etc/hard:one",
		"d/", "d/x:x", "d/sub/", "d/sub/y:y", "gone/", "gone/deep:deep")

	// The second layer comes gzip-compressed on standard input.
	r = hcs(t, bytes.NewReader(compressBytes(t, top, compress.Gzip)), "ocilayer", "apply", "-o", "json", root)
	wantCode(t, r, exitOK)
	var got ociApplyResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	want := ociApplyResult{Root: root, Bytes: int64(len("replaced") + len("z") + len("new")),
		Duration: got.Duration, ReadBytes: got.ReadBytes, Compression: compress.Gzip.String()}
	if got != want || got.ReadBytes <= 0 {
		t.Errorf("result %+v, want %+v", got, want)
	}
	wantTree(t, root, "etc/", "etc/a:one", "etc/b:replaced", "etc/link -> a",
		"d/", "d/z:z", "new:new")
}

func TestOCIApplyInvalid(t *testing.T) {
	tests := []struct {
		name  string
		data  func(top string) []byte
		entry string // named in the message
	}{
		{"dotdot", func(string) []byte {
			return ociTar(t, ociEnt{name: "../sentinel", body: "evil"})
		}, "../sentinel"},
		{"dotdot inside", func(string) []byte {
			return ociTar(t, ociEnt{name: "a/"}, ociEnt{name: "a/../../sentinel", body: "evil"})
		}, "a/../../sentinel"},
		{"hard link out", func(string) []byte {
			return ociTar(t, ociEnt{name: "h", hard: "../sentinel"})
		}, "h"},
		{"whiteout out", func(string) []byte {
			return ociTar(t, ociEnt{name: "../.wh.sentinel"})
		}, "../.wh.sentinel"},
		{"symlink then dotdot", func(top string) []byte {
			return ociTar(t,
				ociEnt{name: "up", sym: "../"},
				ociEnt{name: "abs", sym: top},
				ociEnt{name: strings.TrimPrefix(top, "/") + "/"},
				ociEnt{name: "up/sentinel", body: "evil"},
				ociEnt{name: "abs/sentinel", body: "evil"},
				ociEnt{name: "../x", body: "evil"},
			)
		}, "up/sentinel"}, // a write below a symlink of the same layer is refused
		{"garbage", func(string) []byte {
			return bytes.Repeat([]byte("not a tar "), 200)
		}, ""},
		{"truncated gzip", func(string) []byte {
			return half(compressBytes(t, ociTar(t, ociEnt{name: "f", body: strings.Repeat("data", 10000)}), compress.Gzip))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			sentinel := writeFile(t, top, "sentinel", []byte("keep"))
			root := filepath.Join(top, "root")
			file := writeFile(t, t.TempDir(), "in.tar", tt.data(top))
			r := hcs(t, nil, "ocilayer", "apply", "-f", file, root)
			wantCode(t, r, exitInvalidInput)
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
			if tt.entry != "" && (!strings.Contains(r.stderr, `"`+tt.entry+`"`) || !strings.Contains(r.stderr, "offset")) {
				t.Errorf("message %q names neither entry %q nor its offset", r.stderr, tt.entry)
			}
			if b, err := os.ReadFile(sentinel); err != nil || string(b) != "keep" {
				t.Errorf("sentinel outside the root: %q, %v", b, err)
			}
			// A new root is all or nothing: the failed apply leaves none.
			wantDirNames(t, top, "sentinel")
		})
	}
}

// TestOCIApplyConfined writes through symlinks that point outside the root: the
// writes land inside it, as if the root were "/".
func TestOCIApplyConfined(t *testing.T) {
	top := t.TempDir()
	sentinel := writeFile(t, top, "sentinel", []byte("keep"))
	root := filepath.Join(top, "root")
	// The symlinks come from a lower layer: a layer may not write below its own.
	lower := ociTar(t,
		ociEnt{name: "up", sym: "../../.."},
		ociEnt{name: "abs", sym: top},
		// Without it, abs/sentinel fails: the library does not create
		// directories a symlink points to.
		ociEnt{name: strings.TrimPrefix(top, "/") + "/"},
	)
	wantCode(t, hcs(t, bytes.NewReader(lower), "ocilayer", "apply", "-q", root), exitOK)
	in := ociTar(t,
		ociEnt{name: "up/sentinel", body: "up"},
		ociEnt{name: "abs/sentinel", body: "abs"},
	)
	r := hcs(t, bytes.NewReader(in), "ocilayer", "apply", "-q", root)
	wantCode(t, r, exitOK)
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("-q printed %q, %q", r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(sentinel); err != nil || string(b) != "keep" {
		t.Errorf("sentinel outside the root: %q, %v", b, err)
	}
	wantDirNames(t, top, "root", "sentinel")
	for name, body := range map[string]string{"sentinel": "up", filepath.Join(top, "sentinel"): "abs"} {
		if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != body {
			t.Errorf("%s in the root: %q, %v; want %q", name, b, err, body)
		}
	}
}

func TestOCIApplyNotFound(t *testing.T) {
	dir := t.TempDir()
	r := hcs(t, nil, "ocilayer", "apply", "-f", filepath.Join(dir, "missing.tar"), filepath.Join(dir, "root"))
	wantCode(t, r, exitNotFound)
	wantDirNames(t, dir)
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestOCIDiff(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making overlay whiteouts (0/0 character devices) with mknod needs root")
	}
	upper := t.TempDir()
	p := func(name string) string { return filepath.Join(upper, name) }
	for _, d := range []string{"a", "opq"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, upper, "a/f", []byte("file"))
	writeFile(t, upper, "opq/keep", []byte("kept"))
	if err := unix.Mknod(p("gone"), unix.S_IFCHR|0o000, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(p("a/old"), unix.S_IFCHR|0o000, 0); err != nil {
		t.Fatal(err)
	}
	opaque := true
	if err := unix.Setxattr(p("opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Logf("no opaque directory in this test: setxattr trusted.overlay.opaque: %v", err)
		opaque = false
	}
	want := []string{"a/", "a/.wh.old", "a/f", ".wh.gone", "opq/", "opq/keep"}
	if opaque {
		want = append(want, "opq/.wh..wh..opq")
	}
	slices.Sort(want)

	dir := t.TempDir()
	file := filepath.Join(dir, "layer.tar.gz")
	r := hcs(t, nil, "ocilayer", "diff", "--gzip", "-f", file, upper)
	wantCode(t, r, exitOK)
	re := regexp.MustCompile(`^wrote ` + regexp.QuoteMeta(upper) + ` to ` + regexp.QuoteMeta(file) + ` \([0-9.]+ [KM]?i?B\) in [0-9.]+m?s\n$`)
	if !re.MatchString(r.stdout) {
		t.Errorf("summary %q does not match %s", r.stdout, re)
	}
	wantDirNames(t, dir, "layer.tar.gz")
	gz, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	plain, format := decompress(t, gz)
	if format != compress.Gzip {
		t.Errorf("compression %v, want gzip", format)
	}
	names := tarNames(t, plain)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}

	// Standard output gets the same tar, uncompressed.
	var stdout bytes.Buffer
	code := newApp(strings.NewReader(""), &stdout, io.Discard).execute(t.Context(), []string{"ocilayer", "diff", upper})
	if code != exitOK {
		t.Fatalf("diff to standard output: exit code %d", code)
	}
	if !bytes.Equal(stdout.Bytes(), plain) {
		t.Error("the tar on standard output differs from the one in the file")
	}

	// Applied over a tree holding the removed names, the layer removes them.
	root := t.TempDir()
	base := ociTar(t, ociEnt{name: "gone", body: "g"}, ociEnt{name: "a/"}, ociEnt{name: "a/old", body: "o"},
		ociEnt{name: "opq/"}, ociEnt{name: "opq/lower", body: "l"})
	wantCode(t, hcs(t, bytes.NewReader(base), "ocilayer", "apply", root), exitOK)
	wantCode(t, hcs(t, nil, "ocilayer", "apply", "-f", file, root), exitOK)
	wantTree := []string{"a/", "a/f:file", "opq/", "opq/keep:kept"}
	if !opaque {
		wantTree = append(wantTree, "opq/lower:l")
	}
	slices.Sort(wantTree)
	if got := ociTree(t, root); !slices.Equal(got, wantTree) {
		t.Errorf("tree after applying the diff:\n got %q\nwant %q", got, wantTree)
	}
}

func TestOCIDiffNotFound(t *testing.T) {
	dir := t.TempDir()
	r := hcs(t, nil, "ocilayer", "diff", "-f", filepath.Join(dir, "out.tar"), filepath.Join(dir, "missing"))
	wantCode(t, r, exitNotFound)
	wantDirNames(t, dir)
}
