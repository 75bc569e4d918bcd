package winlayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// TestSmallFilesMadeByWorkersFail: a file a worker fails to make (the
// filesystem is full) fails the layer with an error naming that file, and
// nothing is left: no layer, no staging folder.
func TestSmallFilesMadeByWorkersFail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one processor: files are made without workers")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skip("mounting a tmpfs:", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	dest := filepath.Join(dir, "layer")
	w, err := NewWriter(context.Background(), dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 60<<10)
	var werr error
	for i := 0; i < 200 && werr == nil; i++ {
		e := &Entry{Name: fmt.Sprintf("Files/f%03d", i), Size: int64(len(data)), Info: winfile.BasicInfo{FileAttributes: winfile.AttrArchive}}
		if werr = w.Add(e); werr == nil {
			_, werr = w.Write(data)
		}
	}
	if werr == nil {
		werr = w.Close()
	} else {
		w.Abort()
	}
	t.Logf("error: %v", werr)
	var ee *EntryError
	if !errors.As(werr, &ee) || ee.Entry == "" || !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("error %v (%T): want an *EntryError naming a file, of ENOSPC", werr, werr)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Errorf("left in the parent folder: %s", e.Name())
	}
}
