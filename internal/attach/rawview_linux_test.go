package attach

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// fileDisk reads the virtual disk of a copy of the VHDX at path as the file is
// now: what a crash would leave if every write issued so far had reached the
// disk.
func fileDisk(t *testing.T, path string, n int) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "copy.vhdx")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := vhd.Open(p, true)
	if err != nil {
		t.Fatalf("the copy of the file does not open: %v", err)
	}
	defer d.Close()
	got := make([]byte, n)
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRawViewWriteCache: a dynamic VHDX attached read-write is a disk with a
// write cache. Blocks written through the device are in the file's BAT only
// once the device is flushed (their data synced first), and then read back;
// reads of allocated blocks (spliced from the file) see what was written.
func TestRawViewWriteCache(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	disk := makeDisk(t, t.TempDir(), FormatVHDXDynamic)
	a, err := Attach(ctx, disk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer Detach(ctx, a.Device)
	const n = 4 << 20
	// An aligned buffer for O_DIRECT.
	buf, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(buf)
	f, err := os.OpenFile(a.Device, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if got := fileDisk(t, disk, n); !bytes.Equal(got, make([]byte, n)) {
		t.Fatal("before the device was flushed, the file's BAT already holds the new blocks")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := fileDisk(t, disk, n); !bytes.Equal(got, want) {
		t.Fatal("after the device was flushed, the file does not hold what was written")
	}
	clear(buf)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("reading the device back gives other data")
	}
}
