package cimview

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// fuzzImage is a small image with every kind of node the view shows, loaded
// into memory: a fork whose parent has directories, files, a hard link,
// streams (one larger than an xattr can be), EAs, a security descriptor, a
// symlink, a junction and a removal.
var fuzzImage struct {
	once  sync.Once
	files fstest.MapFS
	names []string // file names, sorted
	err   error
}

func loadFuzzImage(t testing.TB) (fstest.MapFS, []string) {
	fuzzImage.once.Do(func() {
		dir, err := os.MkdirTemp("", "cimview-fuzz-")
		if err != nil {
			fuzzImage.err = err
			return
		}
		defer os.RemoveAll(dir)
		fuzzImage.err = writeFuzzImage(dir)
		if fuzzImage.err != nil {
			return
		}
		fuzzImage.files = fstest.MapFS{}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				fuzzImage.err = err
				return
			}
			fuzzImage.files[e.Name()] = &fstest.MapFile{Data: b}
			fuzzImage.names = append(fuzzImage.names, e.Name())
		}
		sort.Strings(fuzzImage.names)
	})
	if fuzzImage.err != nil {
		t.Fatal(fuzzImage.err)
	}
	return fuzzImage.files, fuzzImage.names
}

func writeFuzzImage(dir string) error {
	sd := []byte{1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	ea, err := winfile.EncodeExtendedAttributes([]winfile.ExtendedAttribute{{Name: "USER.X", Value: []byte("v")}})
	if err != nil {
		return err
	}
	link, err := winfile.NewLinkReparsePoint(`..\a\f.txt`, false).Encode()
	if err != nil {
		return err
	}
	junction, err := winfile.NewLinkReparsePoint(`C:\a`, true).Encode()
	if err != nil {
		return err
	}
	bi := func(attr uint32) winfile.BasicInfo {
		return winfile.BasicInfo{CreationTime: 1, LastWriteTime: 132000000000000000, ChangeTime: 3, LastAccessTime: 4, FileAttributes: attr}
	}
	w, err := cimfs.Create(dir, "base.cim", "")
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error {
			return w.Add(&cimfs.Header{Name: "Files", Info: bi(winfile.AttrDirectory), SecurityDescriptor: sd})
		},
		func() error { return w.Add(&cimfs.Header{Name: "Files/a", Info: bi(winfile.AttrDirectory)}) },
		func() error {
			if err := w.Add(&cimfs.Header{Name: "Files/a/f.txt", Info: bi(winfile.AttrArchive), Size: 5, SecurityDescriptor: sd, ExtendedAttributes: ea}); err != nil {
				return err
			}
			if _, err := w.Write([]byte("hello")); err != nil {
				return err
			}
			if err := w.AddStream("s", 3); err != nil {
				return err
			}
			if _, err := w.Write([]byte("ads")); err != nil {
				return err
			}
			if err := w.AddStream("big", 70000); err != nil {
				return err
			}
			_, err := w.Write(make([]byte, 70000))
			return err
		},
		func() error { return w.AddLink("Files/a/hard.txt", "Files/a/f.txt") },
		func() error {
			return w.Add(&cimfs.Header{Name: "Files/b/link", Info: bi(winfile.AttrArchive | winfile.AttrReparsePoint), ReparseData: link})
		},
		func() error {
			return w.Add(&cimfs.Header{Name: "Files/b/junction", Info: bi(winfile.AttrDirectory | winfile.AttrReparsePoint), ReparseData: junction})
		},
		func() error {
			if err := w.Add(&cimfs.Header{Name: "Files/b/gone.bin", Info: bi(0), Size: 40000}); err != nil {
				return err
			}
			_, err := w.Write(make([]byte, 40000))
			return err
		},
		w.Close,
	}
	for _, s := range steps {
		if err := s(); err != nil {
			w.Abort()
			return err
		}
	}
	w, err = cimfs.Create(dir, "child.cim", "base.cim")
	if err != nil {
		return err
	}
	for _, s := range []func() error{
		func() error { return w.Remove("Files/b/gone.bin") },
		func() error {
			if err := w.Add(&cimfs.Header{Name: "Files/c.txt", Info: bi(winfile.AttrReadOnly), Size: 2}); err != nil {
				return err
			}
			_, err := w.Write([]byte("hi"))
			return err
		},
		w.Close,
	} {
		if err := s(); err != nil {
			w.Abort()
			return err
		}
	}
	return nil
}

// exerciseView calls every view operation on every node it can reach.
// Errors are expected on corrupt input; panics and hangs are the failures.
func exerciseView(t testing.TB, fsys fstest.MapFS) {
	im, err := cimfs.OpenFS(fsys, "child.cim")
	if err != nil {
		return
	}
	defer im.Close()
	v := New(im)
	root, err := v.Root()
	if err != nil {
		return
	}
	buf := make([]byte, 8192)
	seen := map[cimfs.FileID]bool{}
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		a := v.Attr(n)
		for _, name := range v.ListXattr(n) {
			_, err := v.GetXattr(n, name)
			Errno(err)
		}
		v.Readlink(n)
		if a.Mode&ModeType == ModeRegular {
			if err := v.Open(n); err == nil {
				v.ReadAt(n, buf, 0)
				v.ReadAt(n, buf, max(0, a.Size-100))
			}
		}
		if !n.IsDir() || seen[n.ID] || depth > 32 {
			return
		}
		seen[n.ID] = true
		ents, err := v.ReadDir(n)
		if err != nil {
			Errno(err)
			return
		}
		for _, e := range ents {
			c, err := v.Lookup(n, e.Name)
			if err != nil {
				Errno(err)
				continue
			}
			if len(c.Info.Streams) > 0 {
				if sn, err := v.Lookup(n, e.Name+":"+c.Info.Streams[0].Name); err == nil {
					v.ReadAt(sn, buf, 0)
				}
			}
			walk(c, depth+1)
		}
	}
	walk(root, 0)
	for _, p := range []string{"Files/a/f.txt", "FILES/B/LINK", "Files/c.txt"} {
		n := root
		for _, c := range splitSlash(p) {
			var err error
			if n, err = v.Lookup(n, c); err != nil {
				break
			}
		}
	}
}

func splitSlash(p string) []string {
	var out []string
	for p != "" && p != "." {
		out = append([]string{path.Base(p)}, out...)
		p = path.Dir(p)
	}
	return out
}

// TestFuzzImage checks that the fuzz seed is what it should be: every part
// of it readable through the view.
func TestFuzzImage(t *testing.T) {
	fsys, _ := loadFuzzImage(t)
	im, err := cimfs.OpenFS(fsys, "child.cim")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	v := New(im)
	root, _ := v.Root()
	files, _ := v.Lookup(root, "files")
	b, err := v.Lookup(files, "B")
	if err != nil {
		t.Fatal(err)
	}
	l, err := v.Lookup(b, "link")
	if err != nil {
		t.Fatal(err)
	}
	if tgt, _ := v.Readlink(l); tgt != "../a/f.txt" {
		t.Errorf("link target %q", tgt)
	}
	j, err := v.Lookup(b, "junction")
	if err != nil {
		t.Fatal(err)
	}
	if tgt, _ := v.Readlink(j); tgt != "../a" {
		t.Errorf("junction target %q", tgt)
	}
	if _, err := v.Lookup(b, "gone.bin"); Errno(err) != 2 {
		t.Errorf("removed file: %v", err)
	}
	a, _ := v.Lookup(files, "a")
	f, _ := v.Lookup(a, "f.txt")
	h, _ := v.Lookup(a, "hard.txt")
	if v.Attr(f).Ino != v.Attr(h).Ino || v.Attr(f).Nlink != 2 {
		t.Errorf("hard link: %+v %+v", v.Attr(f), v.Attr(h))
	}
	var big *StreamTooLargeError
	if _, err := v.GetXattr(f, XattrADSPrefix+"big"); !errors.As(err, &big) || big.Size != 70000 {
		t.Errorf("big stream xattr: %v", err)
	}
	c, _ := v.Lookup(files, "c.txt")
	if v.Attr(c).Mode != ModeRegular|0o444 {
		t.Errorf("read-only file mode %o", v.Attr(c).Mode)
	}
	exerciseView(t, fsys)
}

// FuzzView opens mutated images (one file of the image set replaced by the
// input) and drives the view's lookup, readdir, read, readlink and xattr
// paths, as the FUSE server would.
func FuzzView(f *testing.F) {
	fsys, names := loadFuzzImage(f)
	for i, n := range names {
		f.Add(uint8(i), fsys[n].Data)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		m := fstest.MapFS{}
		for k, v := range fsys {
			m[k] = v
		}
		m[names[int(which)%len(names)]] = &fstest.MapFile{Data: data}
		exerciseView(t, m)
	})
}
