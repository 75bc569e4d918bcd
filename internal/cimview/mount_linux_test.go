package cimview_test

import (
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
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/cimview"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
)

// TestMain lets the test binary serve as the FUSE helper of its mounts.
func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	os.Exit(m.Run())
}

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE mounts with allow_other")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

// mountCIM mounts cimPath through a helper and unmounts it when the test ends,
// checking that nothing is left.
func mountCIM(t *testing.T, cimPath string) *fusefs.Record {
	t.Helper()
	rec, err := fusefs.Mount(context.Background(), fusefs.Request{Kind: cimview.Kind, Source: cimPath, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fusefs.Unmount(context.Background(), rec.ID); err != nil {
			t.Errorf("unmount: %v", err)
		}
		ms, _ := mountinfo.Read()
		for _, m := range ms {
			if m.Mountpoint == rec.Mountpoint {
				t.Errorf("mount left behind: %+v", m)
			}
		}
	})
	return rec
}

func filetimeNS(ft interface{ Time() time.Time }) int64 { return ft.Time().UnixNano() }

// compareMount checks the mounted tree at mnt against the reader's view: a
// diff -r of content, sizes, times, link identity and targets, listings and
// extended attributes.
func compareMount(t *testing.T, mnt string, wants map[string]*want, order []string) {
	t.Helper()
	inos := map[cimfs.FileID]uint64{}
	byIno := map[uint64]cimfs.FileID{}
	for _, p := range order {
		w := wants[p]
		full := filepath.Join(mnt, p)
		var st unix.Stat_t
		if err := unix.Lstat(full, &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		if st.Mode&unix.S_IFMT != w.mode || st.Nlink != uint64(w.nlink) || w.mode == cimview.ModeRegular && st.Size != w.size {
			t.Errorf("%s: mode %o nlink %d size %d, want type %o nlink %d size %d", p, st.Mode, st.Nlink, st.Size, w.mode, w.nlink, w.size)
		}
		if st.Mtim.Nano() != filetimeNS(w.info.LastWriteTime) || st.Atim.Nano() != filetimeNS(w.info.LastAccessTime) || st.Ctim.Nano() != filetimeNS(w.info.ChangeTime) {
			t.Errorf("%s: times m %v a %v c %v, want %+v", p, st.Mtim, st.Atim, st.Ctim, w.info)
		}
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, full, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME|unix.STATX_BASIC_STATS, &sx); err != nil {
			t.Fatalf("statx %s: %v", p, err)
		}
		if sx.Mask&unix.STATX_BTIME == 0 || sx.Btime.Sec*1e9+int64(sx.Btime.Nsec) != filetimeNS(w.info.CreationTime) {
			t.Errorf("%s: birth time %+v (mask %#x), want %v", p, sx.Btime, sx.Mask, w.info.CreationTime.Time())
		}
		if prev, ok := inos[w.id]; ok && prev != st.Ino {
			t.Errorf("%s: inode %d, another name of file %d has %d", p, st.Ino, w.id, prev)
		}
		if id, ok := byIno[st.Ino]; ok && id != w.id {
			t.Errorf("%s: inode %d shared by files %d and %d", p, st.Ino, id, w.id)
		}
		inos[w.id], byIno[st.Ino] = st.Ino, w.id
		switch w.mode {
		case cimview.ModeDir:
			ents, err := os.ReadDir(full)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			sort.Strings(names)
			if strings.Join(names, "\x00") != strings.Join(w.names, "\x00") {
				t.Errorf("%s: lists %q, want %q", p, names, w.names)
			}
		case cimview.ModeRegular:
			if d, err := digestFile(full); err != nil || d != w.digest {
				t.Errorf("%s: content differs (%v)", p, err)
			}
			for name, d := range w.streams {
				if got, err := digestFile(full + ":" + name); err != nil || got != d {
					t.Errorf("%s:%s: stream content differs (%v)", p, name, err)
				}
			}
		case cimview.ModeSymlink:
			tgt, err := os.Readlink(full)
			if err != nil {
				t.Fatal(err)
			}
			if k, ok := knownTargets[p]; ok && tgt != k {
				t.Errorf("%s: target %q, want %q", p, tgt, k)
			}
			if p == "Files/special/symlink-file" || p == "Files/special/symlink-dir" {
				// The translated target resolves inside the mount.
				if _, err := os.Stat(full); err != nil {
					t.Errorf("%s: target %q does not resolve: %v", p, tgt, err)
				}
			}
		}
		checkMountXattrs(t, full, w)
	}
}

func digestFile(p string) ([32]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d, nil
}

func checkMountXattrs(t *testing.T, full string, w *want) {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(full, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", w.path, err)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	if w.mode == cimview.ModeSymlink {
		// Linux allows user.* attributes on files and directories only.
		if len(names) != 0 {
			t.Errorf("%s: symlink lists xattrs %q", w.path, names)
		}
		return
	}
	if len(names) != len(w.xattrs) {
		t.Errorf("%s: xattrs %q, want %d", w.path, names, len(w.xattrs))
	}
	for _, name := range names {
		wv, ok := w.xattrs[name]
		if !ok {
			t.Errorf("%s: unexpected xattr %s", w.path, name)
			continue
		}
		k, err := unix.Lgetxattr(full, name, buf)
		if wv == nil {
			if !errors.Is(err, unix.E2BIG) {
				t.Errorf("%s: %s: %v, want E2BIG", w.path, name, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(buf[:k], wv) {
			t.Errorf("%s: %s = %x (%v), want %x", w.path, name, buf[:k], err, wv)
		}
	}
}

// TestMountMatchesReader mounts the sample layer and compares every entry of
// the mount with the reader.
func TestMountMatchesReader(t *testing.T) {
	needFUSE(t)
	cimPath := buildLayer(t, t.TempDir(), "base", sampleOptions)
	im, err := cimfs.Open(cimPath)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	wants, order := expected(t, im)
	rec := mountCIM(t, cimPath)
	compareMount(t, rec.Mountpoint, wants, order)
	// Windows lookups ignore case; files cannot be written.
	if _, err := os.Stat(filepath.Join(rec.Mountpoint, "FILES", "SPECIAL", "STREAMS.TXT")); err != nil {
		t.Errorf("case-insensitive lookup: %v", err)
	}
	if _, err := os.OpenFile(filepath.Join(rec.Mountpoint, "Files", "special", "streams.txt"), os.O_WRONLY, 0); !errors.Is(err, unix.EROFS) {
		t.Errorf("open for writing: %v, want EROFS", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(rec.Mountpoint, &sfs); err != nil || sfs.Files == 0 || sfs.Blocks == 0 {
		t.Errorf("statfs: %+v, %v", sfs, err)
	}
}

// TestMountFork mounts a fork over its parent: the union, with the child's
// removals absent and its replacements visible.
func TestMountFork(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	parent := buildLayer(t, dir, "base", sampleOptions)
	pim, err := cimfs.Open(parent)
	if err != nil {
		t.Fatal(err)
	}
	pwants, porder := expected(t, pim)
	pim.Close()
	// A directory and a file the child does not bring back itself.
	removed := []string{"Files/Windows/System32/d0001"}
	for _, p := range porder {
		if strings.HasPrefix(p, "Files/Windows/System32/d0002/") && pwants[p].mode == cimview.ModeRegular {
			removed = append(removed, p)
			break
		}
	}
	for _, r := range removed {
		if pwants[r] == nil {
			t.Fatalf("parent has no %s", r)
		}
	}
	child := buildLayer(t, dir, "child", sampletar.Options{Seed: 9, Files: 20, Bytes: 1 << 20, Whiteouts: removed}, filepath.Join(dir, "base"))
	im, err := cimfs.Open(child)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	wants, order := expected(t, im)
	for _, r := range removed {
		if wants[r] != nil {
			t.Fatalf("the fork still has %s", r)
		}
	}
	kept, replaced := 0, 0
	for p, w := range pwants {
		if cw := wants[p]; cw != nil && cw.mode == cimview.ModeRegular {
			if cw.digest == w.digest {
				kept++
			} else {
				replaced++
			}
		}
	}
	if kept == 0 || replaced == 0 {
		t.Fatalf("the fork keeps %d and replaces %d of its parent's files; the test needs both", kept, replaced)
	}
	rec := mountCIM(t, child)
	compareMount(t, rec.Mountpoint, wants, order)
	for _, r := range removed {
		if _, err := os.Lstat(filepath.Join(rec.Mountpoint, r)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("removed %s: %v", r, err)
		}
	}
}

// TestMountConcurrentReaders reads every file from 8 goroutines at once,
// each in its own order, and checks the content.
func TestMountConcurrentReaders(t *testing.T) {
	needFUSE(t)
	cimPath := buildLayer(t, t.TempDir(), "base", sampleOptions)
	im, err := cimfs.Open(cimPath)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	wants, order := expected(t, im)
	var files []string
	for _, p := range order {
		if wants[p].mode == cimview.ModeRegular {
			files = append(files, p)
		}
	}
	rec := mountCIM(t, cimPath)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range files {
				p := files[(i*7+g*len(files)/8)%len(files)]
				d, err := digestFile(filepath.Join(rec.Mountpoint, p))
				if err != nil || d != wants[p].digest {
					errs <- fmt.Errorf("reader %d: %s: content differs (%v)", g, p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMountCorrupt mounts copies of an image with bytes flipped in its
// metadata region: every operation must end in bounded time with data or an
// error (EIO for broken structures), and the helper must survive to unmount.
func TestMountCorrupt(t *testing.T) {
	needFUSE(t)
	src := buildLayer(t, t.TempDir(), "base", sampletar.Options{Seed: 4, Files: 60, Bytes: 1 << 20, PerDir: 10, Unicode: true})
	meta := metadataRegion(t, src)
	orig, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	eio := 0
	for round := 0; round < 6; round++ {
		dir := copyDir(t, filepath.Dir(src))
		b := bytes.Clone(orig)
		// Flip bytes past the upcase table, where records and link tables are.
		for i := 0; i < 40; i++ {
			off := 40 + 131072 + (round*7919+i*104729)%(len(b)-40-131072)
			b[off] ^= byte(0x55 + i)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(meta)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		rec, err := fusefs.Mount(context.Background(), fusefs.Request{Kind: cimview.Kind, Source: filepath.Join(dir, filepath.Base(src)), ReadOnly: true})
		if err != nil {
			if !errors.Is(err, fusefs.ErrHelper) {
				t.Errorf("round %d: mount: %v", round, err)
			}
			continue
		}
		done := make(chan int, 1)
		go func() { done <- walkAll(rec.Mountpoint) }()
		select {
		case n := <-done:
			eio += n
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: walking the corrupt mount hangs", round)
		}
		if err := unix.Kill(rec.PID, 0); err != nil {
			t.Errorf("round %d: helper gone: %v", round, err)
		}
		if err := fusefs.Unmount(context.Background(), rec.ID); err != nil {
			t.Errorf("round %d: unmount: %v", round, err)
		}
	}
	t.Logf("%d EIO errors over the corrupt mounts", eio)
	if eio == 0 {
		t.Error("no corruption reached the mount as EIO")
	}
}

// walkAll reads everything under dir, ignoring errors, and counts EIOs.
func walkAll(dir string) int {
	eio := 0
	count := func(err error) {
		if errors.Is(err, unix.EIO) {
			eio++
		}
	}
	buf := make([]byte, 64<<10)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			count(err)
			return nil
		}
		_, err = unix.Llistxattr(p, buf)
		count(err)
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				count(err)
				return nil
			}
			_, err = io.Copy(io.Discard, f)
			count(err)
			f.Close()
		}
		return nil
	})
	return eio
}

// TestMountKeepsPageCache checks that pages read through the mount stay in
// the kernel's page cache across closes and opens (no invalidation on open).
func TestMountKeepsPageCache(t *testing.T) {
	needFUSE(t)
	cimPath := buildLayer(t, t.TempDir(), "base", sampleOptions)
	im, err := cimfs.Open(cimPath)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	wants, order := expected(t, im)
	var big string
	for _, p := range order {
		if w := wants[p]; w.mode == cimview.ModeRegular && w.size >= 1<<20 && (big == "" || w.size > wants[big].size) {
			big = p
		}
	}
	if big == "" {
		t.Fatal("the sample has no file of 1 MiB or more")
	}
	rec := mountCIM(t, cimPath)
	p := filepath.Join(rec.Mountpoint, big)
	if d, err := digestFile(p); err != nil || d != wants[big].digest {
		t.Fatalf("%s: %v", big, err)
	}
	// A new open must find every page still cached.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int(wants[big].size)
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal("mincore:", errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	if resident != len(vec) {
		t.Errorf("%s: %d of %d pages cached after reopening", big, resident, len(vec))
	}
}
