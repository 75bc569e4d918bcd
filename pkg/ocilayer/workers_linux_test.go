package ocilayer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestApplyWorkerFailure: a small file a worker fails to make (the filesystem
// is full) fails Apply with an *EntryError naming that file and its offset,
// not the entry being read when the failure came to light.
func TestApplyWorkerFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one processor: files are made without workers")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skip("mounting a tmpfs:", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	body := strings.Repeat("x", 60<<10)
	var ents []ent
	for i := 0; i < 40; i++ {
		ents = append(ents, file(fmt.Sprintf("f%03d", i), body))
	}
	_, err := Apply(context.Background(), dir, bytes.NewReader(layer(t, ents...)))
	var ee *EntryError
	if !errors.As(err, &ee) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v (%T): want an *EntryError of ENOSPC", err, err)
	}
	// f<i> starts at 512 + i*(512+60 KiB): header block, data.
	var i int
	if _, serr := fmt.Sscanf(ee.Entry, "f%03d", &i); serr != nil {
		t.Fatalf("entry %q names no file of the layer", ee.Entry)
	}
	if want := int64(i) * (512 + 60<<10); ee.Offset != want {
		t.Errorf("%s at offset %d, want %d", ee.Entry, ee.Offset, want)
	}
}

// TestApplyWorkersSameTree: the same layer applied with workers and without
// gives the same tree, with names given twice, links to small files, files
// replacing directories and whiteouts of small files.
func TestApplyWorkersSameTree(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one processor: files are made without workers")
	}
	var ents []ent
	for i := 0; i < 7; i++ {
		ents = append(ents, dir(fmt.Sprintf("d%d", i)))
	}
	for i := 0; i < 300; i++ {
		ents = append(ents, file(fmt.Sprintf("d%d/f%03d", i%7, i), strings.Repeat(string(rune('a'+i%26)), i*37)))
	}
	ents = append(ents,
		file("d1/f001", "given again"),
		hardlink("d2/link", "d2/f002"),
		file("d3", "a file where a directory was"),
		file("d4/.wh.f004", ""),
		dir("d5/f005"),
		dir("d6/f006"),
		file("d6/f006/below", "a directory where a file was"),
		// Each right after the small file it touches, which a worker may
		// still be making.
		dir("e"),
		file("e/a", "aaa"), hardlink("e/b", "e/a"),
		file("e/c", "ccc"), dir("e/c"),
		file("e/w", "www"), file("e/.wh.w", ""),
		file("e/s", "sss"), symlink("e/s", "a"),
	)
	data := layer(t, ents...)
	apply := func(procs int) (map[string]node, error) {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		d := filepath.Join(t.TempDir(), "root")
		os.Mkdir(d, 0o755)
		_, err := Apply(context.Background(), d, bytes.NewReader(data))
		return tree(t, d), err
	}
	seq, serr := apply(1)
	par, perr := apply(runtime.GOMAXPROCS(0))
	if (serr == nil) != (perr == nil) || (serr != nil && serr.Error() != perr.Error()) {
		t.Fatalf("errors differ: without workers %v, with %v", serr, perr)
	}
	if len(seq) != len(par) {
		t.Errorf("%d entries without workers, %d with", len(seq), len(par))
	}
	for k, v := range seq {
		if par[k].String() != v.String() {
			t.Errorf("%s: without workers %s, with %s", k, v, par[k])
		}
	}
}
