package ocilayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type tarItem struct {
	Name, Linkname string
	Type           byte
	Mode           int64
	Xattrs         map[string]string
}

func readTar(t *testing.T, b []byte) []tarItem {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var items []tarItem
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return items
		}
		if err != nil {
			t.Fatalf("reading Diff output: %v", err)
		}
		if h.Uname != "" || h.Gname != "" || h.Format != tar.FormatPAX && h.Format != tar.FormatUSTAR {
			t.Errorf("%s: uname %q gname %q format %v; want empty names, PAX", h.Name, h.Uname, h.Gname, h.Format)
		}
		it := tarItem{Name: h.Name, Linkname: h.Linkname, Type: h.Typeflag, Mode: h.Mode}
		for k, v := range h.PAXRecords {
			if len(k) > len(paxXattr) && k[:len(paxXattr)] == paxXattr {
				if it.Xattrs == nil {
					it.Xattrs = map[string]string{}
				}
				it.Xattrs[k[len(paxXattr):]] = v
			}
		}
		items = append(items, it)
	}
}

// TestDiffUpper builds an upper directory by hand, the way overlayfs leaves
// one, and checks the tar Diff makes of it.
func TestDiffUpper(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	p := func(name string) string { return filepath.Join(upper, name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(p("b"), 0o755))
	must(os.WriteFile(p("b/z"), []byte("z"), 0o644))
	must(os.Link(p("b/z"), p("a")))
	must(unix.Mknod(p("b/gone"), unix.S_IFCHR, 0))
	must(os.Mkdir(p("opq"), 0o750))
	must(unix.Setxattr(p("opq"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(p("opq"), "trusted.overlay.origin", []byte("junk"), 0))
	must(unix.Setxattr(p("opq"), "user.keep", []byte("1"), 0))
	must(os.WriteFile(p("opq/f"), nil, 0o600))
	must(os.Symlink("/b/z", p("s")))
	must(unix.Mkfifo(p("b/fifo"), 0o600))

	var buf bytes.Buffer
	if err := Diff(context.Background(), &buf, upper); err != nil {
		t.Fatalf("Diff: %v", err)
	}
	got := readTar(t, buf.Bytes())
	want := []tarItem{
		{Name: "a", Type: tar.TypeReg, Mode: 0o644},
		{Name: "b/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "b/fifo", Type: tar.TypeFifo, Mode: 0o600},
		// Sorted by the names in the upper directory: gone, not .wh.gone.
		{Name: "b/.wh.gone", Type: tar.TypeReg},
		{Name: "b/z", Linkname: "a", Type: tar.TypeLink, Mode: 0o644},
		{Name: "opq/", Type: tar.TypeDir, Mode: 0o750, Xattrs: map[string]string{"user.keep": "1"}},
		{Name: "opq/.wh..wh..opq", Type: tar.TypeReg},
		{Name: "opq/f", Type: tar.TypeReg, Mode: 0o600},
		{Name: "s", Linkname: "/b/z", Type: tar.TypeSymlink, Mode: 0o777},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff entries:\n got %+v\nwant %+v", got, want)
	}
	var again bytes.Buffer
	if err := Diff(context.Background(), &again, upper); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("a second Diff of the same directory differs (err %v)", err)
	}

	must(unix.Setxattr(p("b"), "trusted.overlay.redirect", []byte("/x"), 0))
	err := Diff(context.Background(), io.Discard, upper)
	var ee *EntryError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ee) || ee.Entry != "b" {
		t.Errorf("Diff of a redirected directory: %v; want *EntryError for b matching ErrUnsupported", err)
	}
}

// TestOverlayRoundTrip mounts a real overlay over an applied layer, changes it,
// and checks that applying Diff of the upper directory onto a copy of the
// lower layer gives the tree the overlay showed.
func TestOverlayRoundTrip(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	// tmpfs supports the trusted and user xattrs overlayfs needs, whatever
	// the file system of the temporary directory.
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "mode=0755"); err != nil {
		t.Skipf("cannot mount tmpfs (%v); needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })
	p := func(name string) string { return filepath.Join(base, name) }
	for _, d := range []string{"lower", "upper", "work", "merged", "copy"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if _, err := Apply(ctx, p("lower"), bytes.NewReader(baseLayer(t))); err != nil {
		t.Fatalf("Apply lower: %v", err)
	}
	opts := "lowerdir=" + p("lower") + ",upperdir=" + p("upper") + ",workdir=" + p("work") + ",redirect_dir=off,metacopy=off,index=off"
	if err := unix.Mount("overlay", p("merged"), "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlayfs (%v); needs the overlay module and CAP_SYS_ADMIN", err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(p("merged"), unix.MNT_DETACH)
		}
	}()

	m := func(name string) string { return filepath.Join(base, "merged", name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(m("newfile"), []byte("new"), 0o640))
	must(unix.Lsetxattr(m("newfile"), "user.new", []byte("v"), 0))
	must(os.Link(m("newfile"), m("etc/newlink")))
	must(os.Symlink("../newfile", m("etc/newsym")))
	must(unix.Mkfifo(m("newfifo"), 0o600))
	f, err := os.OpenFile(m("etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteString("user:x:1000:1000\n")
	must(err)
	must(f.Close())
	must(os.Remove(m("var/cache/x")))
	must(unix.Chmod(m("tmp"), 0o1770))
	must(os.Lchown(m("lib"), 7, 8))
	must(os.RemoveAll(m("usr/lib")))
	must(os.Mkdir(m("usr/lib"), 0o711))
	must(os.WriteFile(m("usr/lib/fresh"), []byte("fresh"), 0o644))
	must(os.Chtimes(m("usr/lib/fresh"), time.Time{}, t2))

	want := tree(t, p("merged"))
	must(unix.Unmount(p("merged"), 0))
	mounted = false

	var layerBuf bytes.Buffer
	if err := Diff(ctx, &layerBuf, p("upper")); err != nil {
		t.Fatalf("Diff: %v", err)
	}
	for _, it := range readTar(t, layerBuf.Bytes()) {
		t.Logf("diff entry %s %c %q", it.Name, it.Type, it.Linkname)
	}
	if _, err := Apply(ctx, p("copy"), bytes.NewReader(baseLayer(t))); err != nil {
		t.Fatalf("Apply lower to the copy: %v", err)
	}
	if _, err := Apply(ctx, p("copy"), bytes.NewReader(layerBuf.Bytes())); err != nil {
		t.Fatalf("Apply diff: %v", err)
	}
	got := tree(t, p("copy"))
	if !compareTrees(t, got, want) {
		t.Log("merged view:")
		dumpTree(t, want)
		t.Log("lower copy with the diff applied:")
		dumpTree(t, got)
	}
	wantSameFile(t, p("copy/newfile"), p("copy/etc/newlink"))
}
