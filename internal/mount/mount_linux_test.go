package mount

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// needMountCaps skips t unless the process may mount (CAP_SYS_ADMIN), naming the
// missing capability.
func needMountCaps(t *testing.T) {
	t.Helper()
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Skipf("capget: %v", err)
	}
	if data[0].Effective&(1<<unix.CAP_SYS_ADMIN) == 0 {
		t.Skip("mount tests need CAP_SYS_ADMIN")
	}
}

// mounted says whether something is mounted at path.
func mounted(path string) bool {
	m, _ := mountinfo.Lookup(path)
	return len(m) > 0
}

// unmountAtCleanup unmounts dir when the test ends, failing the test if that fails.
func unmountAtCleanup(t *testing.T, dir string) {
	t.Helper()
	t.Cleanup(func() {
		if mounted(dir) {
			if err := Unmount(dir); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// makeStack makes n lower layer directories: every layer has "f" holding its
// index (layer 0 is the top), "only<i>", and the bottom layer has "gone", which a
// whiteout in layer 0 hides, and "dir/old", hidden by an opaque "dir" in layer 0.
func makeStack(t *testing.T, n int) []string {
	t.Helper()
	base := t.TempDir()
	lowers := make([]string, n)
	for i := range n {
		d := filepath.Join(base, fmt.Sprint(i))
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "f"), []byte(fmt.Sprint(i)), 0o644))
		must(t, os.WriteFile(filepath.Join(d, fmt.Sprint("only", i)), nil, 0o644))
		lowers[i] = d
	}
	bottom := lowers[n-1]
	must(t, os.WriteFile(filepath.Join(bottom, "gone"), []byte("x"), 0o644))
	must(t, os.MkdirAll(filepath.Join(bottom, "dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(bottom, "dir", "old"), nil, 0o644))
	if n > 1 {
		top := lowers[0]
		must(t, unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR|0o000, 0))
		must(t, os.Mkdir(filepath.Join(top, "dir"), 0o755))
		must(t, unix.Setxattr(filepath.Join(top, "dir"), "trusted.overlay.opaque", []byte("y"), 0))
		must(t, os.WriteFile(filepath.Join(top, "dir", "new"), nil, 0o644))
	}
	return lowers
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkUnion checks the view of a stack made by makeStack.
func checkUnion(t *testing.T, root string, n int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "f"))
	if err != nil || string(b) != "0" {
		t.Errorf("f: got %q, %v; want the top layer's \"0\"", b, err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	only := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "only") {
			only++
		}
	}
	if only != n {
		t.Errorf("got %d only<i> files, want one per layer (%d)", only, n)
	}
	if n > 1 {
		if _, err := os.Lstat(filepath.Join(root, "gone")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("gone: got %v, want it hidden by the whiteout", err)
		}
		if _, err := os.Lstat(filepath.Join(root, "dir", "old")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dir/old: got %v, want it hidden by the opaque directory", err)
		}
		if _, err := os.Lstat(filepath.Join(root, "dir", "new")); err != nil {
			t.Errorf("dir/new: %v", err)
		}
	}
}

func TestOverlayDepth(t *testing.T) {
	needMountCaps(t)
	for _, n := range []int{1, 16, 128, MaxLowerLayers} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			lowers := makeStack(t, n)
			total := 0
			for _, l := range lowers {
				total += len(l) + 1
			}
			t.Logf("%d lowers, %d bytes of lowerdir paths", n, total)
			for _, writable := range []bool{false, true} {
				target := t.TempDir()
				o := Overlay{Lower: lowers, Source: "hcs-test"}
				if writable {
					scratch := t.TempDir()
					o.Upper, o.Work = filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
					must(t, os.Mkdir(o.Upper, 0o755))
					must(t, os.Mkdir(o.Work, 0o755))
				}
				if err := MountOverlay(target, o); err != nil {
					t.Fatal(err)
				}
				unmountAtCleanup(t, target)
				checkUnion(t, target, n)
				m, err := mountinfo.Lookup(target)
				if n == 1 && !writable {
					// A read-only bind mount: overlayfs needs two lowers without an upper.
					if err != nil || len(m) != 1 || !strings.Contains(m[0].Options, "ro") {
						t.Fatalf("mountinfo for %s: %+v, %v; want one read-only bind mount", target, m, err)
					}
				} else if err != nil || len(m) != 1 || m[0].FSType != "overlay" || m[0].Source != "hcs-test" {
					t.Fatalf("mountinfo for %s: %+v, %v; want one overlay from hcs-test", target, m, err)
				}
				err = os.WriteFile(filepath.Join(target, "new"), nil, 0o644)
				if writable {
					if err != nil {
						t.Errorf("writing to a writable union: %v", err)
					} else if _, err := os.Stat(filepath.Join(o.Upper, "new")); err != nil {
						t.Errorf("new file not in the upper directory: %v", err)
					}
				} else if !errors.Is(err, unix.EROFS) {
					t.Errorf("writing to a read-only union: got %v, want EROFS", err)
				}
				must(t, Unmount(target))
				if mounted(target) {
					t.Errorf("%s still mounted", target)
				}
			}
		})
	}
}

func TestOverlayTooMany(t *testing.T) {
	lowers := make([]string, MaxLowerLayers+1)
	for i := range lowers {
		lowers[i] = "/nonexistent"
	}
	target := t.TempDir()
	err := MountOverlay(target, Overlay{Lower: lowers})
	if !errors.Is(err, ErrTooManyLayers) {
		t.Fatalf("got %v, want ErrTooManyLayers", err)
	}
	if !strings.Contains(err.Error(), "501") {
		t.Errorf("error %q does not give the layer count", err)
	}
}

func TestOverlayErrors(t *testing.T) {
	needMountCaps(t)
	lowers := makeStack(t, 2)
	target := t.TempDir()
	missing := filepath.Join(t.TempDir(), "missing")
	err := MountOverlay(target, Overlay{Lower: []string{lowers[0], missing}})
	var me *Error
	if !errors.As(err, &me) || !errors.Is(err, unix.ENOENT) || me.Source != missing {
		t.Fatalf("got %v, want an *Error naming %s and matching ENOENT", err, missing)
	}
	// A lower on another overlay with an upper: the kernel explains in its log.
	if mounted(target) {
		t.Fatal("a failed mount left a mount behind")
	}
	if err := MountOverlay(target, Overlay{Lower: lowers, Upper: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("upper without work: got %v", err)
	}
	if err := MountOverlay(target, Overlay{}); err == nil {
		t.Error("no lowers: no error")
	}
	if err := Unmount(target); !errors.Is(err, ErrNotMounted) {
		t.Errorf("unmounting a plain directory: got %v, want ErrNotMounted", err)
	}
}

// TestPathsWithSeparators mounts lowers whose names hold the characters that the
// option string of mount(2) cannot carry unescaped.
func TestPathsWithSeparators(t *testing.T) {
	needMountCaps(t)
	base := t.TempDir()
	var lowers []string
	for i, name := range []string{"a:b", "c,d", "e f\\g"} {
		d := filepath.Join(base, name)
		must(t, os.Mkdir(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, fmt.Sprint("file", i)), nil, 0o644))
		lowers = append(lowers, d)
	}
	target := filepath.Join(base, "mnt point")
	must(t, os.Mkdir(target, 0o755))
	must(t, MountOverlay(target, Overlay{Lower: lowers}))
	unmountAtCleanup(t, target)
	for i := range lowers {
		if _, err := os.Stat(filepath.Join(target, fmt.Sprint("file", i))); err != nil {
			t.Error(err)
		}
	}
	m, err := mountinfo.Lookup(target)
	if err != nil || len(m) != 1 {
		t.Fatalf("Lookup(%q) = %v, %v; the escaped mount point did not parse back", target, m, err)
	}
}

func TestExt4AndUnmountAll(t *testing.T) {
	needMountCaps(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not found (e2fsprogs)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.Mkdir(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "hello"), []byte("hi"), 0o644))
	img := filepath.Join(dir, "img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", src, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	dev := attachLoop(t, img)
	root := filepath.Join(dir, "root")
	ext := filepath.Join(root, "ext")
	must(t, os.MkdirAll(ext, 0o755))
	must(t, Bind(root, root))
	must(t, MountExt4(dev, ext, true))
	if b, err := os.ReadFile(filepath.Join(ext, "hello")); err != nil || string(b) != "hi" {
		t.Errorf("hello: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(ext, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to read-only ext4: got %v, want EROFS", err)
	}
	// A busy mount is refused, not unmounted lazily.
	f, err := os.Open(filepath.Join(ext, "hello"))
	must(t, err)
	if _, err := UnmountAll(root, false); !errors.Is(err, ErrBusy) {
		t.Errorf("UnmountAll of a busy mount: got %v, want ErrBusy", err)
	}
	f.Close()
	got, err := UnmountAll(root, false)
	must(t, err)
	if len(got) != 2 || got[0].Mountpoint != ext || got[1].Mountpoint != root {
		t.Errorf("UnmountAll unmounted %+v, want %s then %s", got, ext, root)
	}
	if m, _ := mountinfo.Read(); len(mountinfo.Under(m, root)) != 0 {
		t.Errorf("mounts left under %s", root)
	}
}

// attachLoop attaches file to a loop device with losetup (the oracle, not our
// internal/loop) and detaches it at cleanup.
func attachLoop(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", file).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestOverlayOptionString checks which unions go through one mount(2) call, with
// absolute or relative lower names, and which through the file system context.
func TestOverlayOptionString(t *testing.T) {
	stack := func(n int, prefix string) []string {
		ls := make([]string, n)
		for i := range ls {
			ls[i] = fmt.Sprintf("%s/layers/%d/fs", prefix, i)
		}
		return ls
	}
	long := "/var/lib/hostcompute/" + strings.Repeat("x", 40)
	deep := stack(500, long)
	for i := range deep {
		deep[i] += "/" + strings.Repeat("y", 10)
	}
	for name, c := range map[string]struct {
		o        Overlay
		ok       bool
		dir      string
		contains string
	}{
		"absolute":       {o: Overlay{Lower: []string{"/a", "/b/c"}, Upper: "/u", Work: "/w"}, ok: true, contains: "lowerdir=/a:/b/c,upperdir=/u,workdir=/w"},
		"read-only":      {o: Overlay{Lower: stack(16, long)}, ok: true, contains: "lowerdir=" + long + "/layers/0/fs:"},
		"relative":       {o: Overlay{Lower: stack(128, long), Upper: "/u", Work: "/w"}, ok: true, dir: long + "/layers", contains: "lowerdir=0/fs:1/fs:2/fs:"},
		"deepest common": {o: Overlay{Lower: append(stack(127, long), long+"/other")}, ok: true, dir: long, contains: "lowerdir=layers/0/fs:layers/1/fs:"},
		"too long":       {o: Overlay{Lower: deep}},
		"colon":          {o: Overlay{Lower: []string{"/a:b", "/c"}}},
		"comma in upper": {o: Overlay{Lower: []string{"/a", "/c"}, Upper: "/u,x", Work: "/w"}},
		"relative lower": {o: Overlay{Lower: []string{"a", "/c"}}},
		"unclean lower":  {o: Overlay{Lower: []string{"/a/../b", "/c"}}},
	} {
		t.Run(name, func(t *testing.T) {
			data, dir, ok := overlayOptionString(c.o)
			if ok != c.ok || dir != c.dir || !strings.Contains(data, c.contains) {
				t.Fatalf("got (%.80q…, %q, %v), want ok %v, dir %q, data containing %q", data, dir, ok, c.ok, c.dir, c.contains)
			}
			if ok && len(data) >= optionPage {
				t.Fatalf("option string of %d bytes", len(data))
			}
		})
	}
}

// plainAbsolute is the one-pass form of what overlayOptionString needs of a
// lower path; it must agree with the plain definition.
func FuzzPlainAbsolute(f *testing.F) {
	for _, s := range []string{"/", "/a", "//a", "/a/", "/a/.", "/a/..", "/./a", "/a/b/c", "a/b", "", "/a,b", "/a:b", "/a\\b", "/...", "/.a", "/a..", "/a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		want := filepath.IsAbs(p) && filepath.Clean(p) == p && p != "/" && !strings.ContainsAny(p, ",:\\")
		if got := plainAbsolute(p); got != want {
			t.Fatalf("plainAbsolute(%q) = %v, want %v", p, got, want)
		}
	})
}

// FuzzPlainAbsoluteAfter holds the check that skips what a path shares with the
// previous lower to the whole check.
func FuzzPlainAbsoluteAfter(f *testing.F) {
	for _, s := range [][2]string{
		{"/s/layers/12/fs", "/s/layers/9/fs"}, {"/s/layers/12/fs", "/s/layers/12/../fs"}, {"/a/b", "/a"},
		{"/a/b", "/a/b/"}, {"/a/b", "/a//b"}, {"/a/bc", "/a/b,c"}, {"/ab/c", "/a/./c"}, {"/a/..b", "/a/.."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, prev, p string) {
		if !plainAbsolute(prev) {
			prev = ""
		}
		want := filepath.IsAbs(p) && filepath.Clean(p) == p && p != "/" && !strings.ContainsAny(p, ",:\\")
		if got := plainAbsoluteAfter(p, prev); got != want {
			t.Fatalf("plainAbsoluteAfter(%q, %q) = %v, want %v", p, prev, got, want)
		}
	})
}
