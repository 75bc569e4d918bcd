package cimfs

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
)

func TestExtent(t *testing.T) {
	dir := t.TempDir()
	build(t, dir, "x.cim", "", sampleFiles(t))
	im, err := Open(filepath.Join(dir, "x.cim"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	checked := 0
	var walk func(id FileID)
	walk = func(id FileID) {
		fi, err := im.StatID(id)
		if err != nil {
			t.Fatal(err)
		}
		if fi.IsDir() {
			ents, _ := im.ReadDirID(id)
			for _, e := range ents {
				walk(e.ID)
			}
			return
		}
		f, err := im.OpenID(id)
		if err != nil {
			t.Fatal(err)
		}
		r, off, ok := f.Extent()
		if !ok {
			return
		}
		want := make([]byte, f.Size())
		got := make([]byte, f.Size())
		if _, err := f.ReadAt(want, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if _, err := r.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("file %d: extent bytes differ", id)
		}
		checked++
	}
	walk(im.Root())
	if checked == 0 {
		t.Error("no stream has an extent")
	}
}
