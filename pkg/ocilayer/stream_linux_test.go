package ocilayer

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestApplyBoundedMemory streams a large file through Apply and checks that
// the memory allocated does not grow with the file.
func TestApplyBoundedMemory(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: size, Format: tar.FormatPAX})
		chunk := make([]byte, 1<<20)
		for n := int64(0); err == nil && n < size; n += int64(len(chunk)) {
			_, err = tw.Write(chunk)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	root := t.TempDir()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err := Apply(context.Background(), root, pr, WithoutOwnership())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if n != size {
		t.Errorf("Apply wrote %d bytes; want %d", n, size)
	}
	if fi, err := os.Stat(filepath.Join(root, "big")); err != nil || fi.Size() != size {
		t.Errorf("big: %v, %v; want %d bytes", fi, err, size)
	}
	// The writer goroutine's 1 MiB chunk and the tar machinery are included.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("Apply of a %d MiB file allocated %d KiB; want it bounded, not growing with the file", size>>20, alloc>>10)
	}
}
