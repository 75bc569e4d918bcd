package cimview_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/hostcompute/hostcompute/internal/cimview"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
)

var sampleOptions = sampletar.Options{Seed: 3, Files: 300, Bytes: 4 << 20, PerDir: 40, UtilityVM: true, Hives: true, LargeFiles: 2, Unicode: true}

// TestViewMatchesReader walks the view in-process and checks every entry
// against what the reader says: type, size, times, inode identity, link
// counts, content, symlink targets, extended attributes and streams.
func TestViewMatchesReader(t *testing.T) {
	cimPath := buildLayer(t, t.TempDir(), "base", sampleOptions)
	im, err := cimfs.Open(cimPath)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	wants, order := expected(t, im)
	t.Logf("%d entries", len(order))
	v := cimview.New(im)
	root, err := v.Root()
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*cimview.Node{"": root}
	inos := map[cimfs.FileID]uint64{}
	byIno := map[uint64]cimfs.FileID{}
	buf := make([]byte, 1<<20)
	for _, p := range order {
		w := wants[p]
		n := nodes[p]
		if n == nil {
			t.Fatalf("%s: not reached", p)
		}
		a := v.Attr(n)
		if a.Mode&cimview.ModeType != w.mode || a.Size != w.size && w.mode == cimview.ModeRegular || a.Nlink != w.nlink {
			t.Errorf("%s: mode %o size %d nlink %d, want type %o size %d nlink %d", p, a.Mode, a.Size, a.Nlink, w.mode, w.size, w.nlink)
		}
		if a.Mtime != w.info.LastWriteTime || a.Atime != w.info.LastAccessTime || a.Ctime != w.info.ChangeTime || a.Btime != w.info.CreationTime {
			t.Errorf("%s: times %v, want %+v", p, a, w.info)
		}
		if prev, ok := inos[w.id]; ok && prev != a.Ino {
			t.Errorf("%s: inode %d, another name of file %d has %d", p, a.Ino, w.id, prev)
		}
		if id, ok := byIno[a.Ino]; ok && id != w.id {
			t.Errorf("%s: inode %d shared by files %d and %d", p, a.Ino, id, w.id)
		}
		inos[w.id], byIno[a.Ino] = a.Ino, w.id
		checkViewXattrs(t, v, n, w)
		switch w.mode {
		case cimview.ModeDir:
			ents, err := v.ReadDir(n)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
				c, err := v.Lookup(n, e.Name)
				if err != nil {
					t.Fatalf("lookup %s: %v", path.Join(p, e.Name), err)
				}
				if e.Ino != v.Attr(c).Ino || e.Mode != v.Attr(c).Mode&cimview.ModeType {
					t.Errorf("%s: readdir says ino %d mode %o, lookup %d %o", path.Join(p, e.Name), e.Ino, e.Mode, v.Attr(c).Ino, v.Attr(c).Mode)
				}
				nodes[path.Join(p, e.Name)] = c
				// Windows lookups ignore case.
				if up, err := v.Lookup(n, strings.ToUpper(e.Name)); err != nil || up.ID != c.ID {
					t.Errorf("lookup %s in upper case: %v", path.Join(p, e.Name), err)
				}
			}
			sort.Strings(names)
			if strings.Join(names, "\x00") != strings.Join(w.names, "\x00") {
				t.Errorf("%s: lists %q, want %q", p, names, w.names)
			}
		case cimview.ModeRegular:
			h := sha256.New()
			for off := int64(0); ; {
				k, err := v.ReadAt(n, buf, off)
				if err != nil {
					t.Fatal(err)
				}
				h.Write(buf[:k])
				off += int64(k)
				if k < len(buf) {
					break
				}
			}
			if !bytes.Equal(h.Sum(nil), w.digest[:]) {
				t.Errorf("%s: content differs", p)
			}
		case cimview.ModeSymlink:
			tgt, err := v.Readlink(n)
			if err != nil {
				t.Fatal(err)
			}
			if k, ok := knownTargets[p]; ok && tgt != k {
				t.Errorf("%s: target %q, want %q", p, tgt, k)
			}
		}
	}
	for p := range knownTargets {
		if wants[p] == nil {
			t.Errorf("sample has no %s", p)
		}
	}
	// Streams as files: "<file>:<stream>".
	dir := nodes["Files/special"]
	for name, d := range wants["Files/special/streams.txt"].streams {
		sn, err := v.Lookup(dir, "streams.txt:"+strings.ToUpper(name))
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		a := v.Attr(sn)
		b := make([]byte, a.Size+10)
		k, err := v.ReadAt(sn, b, 0)
		if err != nil || int64(k) != a.Size || sha256.Sum256(b[:k]) != d {
			t.Errorf("stream %s: %d bytes, %v", name, k, err)
		}
		if a.Ino == inos[wants["Files/special/streams.txt"].id] {
			t.Errorf("stream %s shares the file's inode", name)
		}
	}
	if _, err := v.Lookup(dir, "streams.txt:nosuch"); cimview.Errno(err) != syscall.ENOENT {
		t.Errorf("missing stream: %v", err)
	}
	if _, err := v.Lookup(dir, "nosuch"); cimview.Errno(err) != syscall.ENOENT {
		t.Errorf("missing file: %v", err)
	}
	if _, err := v.Lookup(nodes["Files/special/streams.txt"], "x"); cimview.Errno(err) != syscall.ENOTDIR {
		t.Errorf("lookup in a file: %v", err)
	}
}

func checkViewXattrs(t *testing.T, v *cimview.View, n *cimview.Node, w *want) {
	t.Helper()
	names := v.ListXattr(n)
	if len(names) != len(w.xattrs) {
		t.Errorf("%s: xattrs %q, want %d", w.path, names, len(w.xattrs))
	}
	for _, name := range names {
		wv, ok := w.xattrs[name]
		if !ok {
			t.Errorf("%s: unexpected xattr %s", w.path, name)
			continue
		}
		got, err := v.GetXattr(n, name)
		var big *cimview.StreamTooLargeError
		if wv == nil {
			if !errors.As(err, &big) || cimview.Errno(err) != syscall.E2BIG {
				t.Errorf("%s: %s: %v, want a too-large error", w.path, name, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, wv) {
			t.Errorf("%s: %s = %x (%v), want %x", w.path, name, got, err, wv)
		}
	}
	if _, err := v.GetXattr(n, "user.other"); cimview.Errno(err) != syscall.ENODATA {
		t.Errorf("%s: unknown xattr: %v", w.path, err)
	}
}
