package vhd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// snapshotDisk copies the file at path as it is now (what a crash after every
// write issued so far reached the disk would leave) to name in the same
// directory, so that a differencing copy still finds its parent, and returns
// the copy's virtual disk and path. qemu-img checks the copy of a disk without
// parent (it opens no differencing VHDX).
func snapshotDisk(t *testing.T, path, name string) ([]byte, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(path), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, true)
	if err != nil {
		t.Fatalf("opening the copy taken before Flush: %v", err)
	}
	defer d.Close()
	if _, err := exec.LookPath("qemu-img"); err == nil && d.Parent() == nil {
		if out, err := exec.Command("qemu-img", "check", "-f", "vhdx", p).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img check %s: %v\n%s", name, err, out)
		}
	}
	return readAll(t, d), p
}

// TestVHDXBatchAllocationsDynamic checks that with BatchAllocations the file
// holds the BAT of the last Flush until the next one: blocks allocated since
// read as zeros in a copy of the file, blocks allocated before keep their new
// data, and Flush, Resize and Close write what was kept.
func TestVHDXBatchAllocationsDynamic(t *testing.T) {
	const size, bs = 16 << 20, 1 << 20
	p := filepath.Join(t.TempDir(), "d.vhdx")
	if err := CreateVHDX(p, VHDXCreateOptions{Size: size, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	d.BatchAllocations()
	model := make([]byte, size)
	data := randomBytes(t, size)
	write := func(off, n int64) {
		t.Helper()
		if _, err := d.WriteAt(data[off:off+n], off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:off+n], data[off:off+n])
	}
	write(0, 4*bs) // blocks 0–3
	if got, _ := snapshotDisk(t, p, "s0.vhdx"); !bytes.Equal(got, make([]byte, size)) {
		t.Fatalf("before the first Flush, the file's disk differs from the empty disk at %d", firstDiff(got, make([]byte, size)))
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := snapshotDisk(t, p, "s1.vhdx"); !bytes.Equal(got, model) {
		t.Fatalf("after Flush, the file's disk differs at %d", firstDiff(got, model))
	}
	// Blocks 4–7 are new; block 1 is overwritten in place, odd ranges.
	write(4*bs+100, 4*bs-200)
	copy(data[bs:2*bs], randomBytes(t, bs))
	write(bs+512, bs/2+3)
	want := bytes.Clone(model)
	clear(want[4*bs : 8*bs])
	if got, _ := snapshotDisk(t, p, "s2.vhdx"); !bytes.Equal(got, want) {
		t.Fatalf("before Flush, the file's disk differs from the last flushed BAT at %d", firstDiff(got, want))
	}
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("reads through the open disk differ at %d", firstDiff(got, model))
	}
	// Resize writes the kept entries first.
	if err := d.Resize(2 * size); err != nil {
		t.Fatal(err)
	}
	model = append(model, make([]byte, size)...)
	if got, _ := snapshotDisk(t, p, "s3.vhdx"); !bytes.Equal(got, model) {
		t.Fatalf("after Resize, the file's disk differs at %d", firstDiff(got, model))
	}
	data = append(data, randomBytes(t, size)...)
	write(size+3*bs, 2*bs)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := snapshotDisk(t, p, "s4.vhdx"); !bytes.Equal(got, model) {
		t.Fatalf("after Close, the file's disk differs at %d", firstDiff(got, model))
	}
}

// TestVHDXBatchAllocationsDifferencing does the same for partial writes into a
// differencing disk, whose sector bitmap bits are kept as well.
func TestVHDXBatchAllocationsDifferencing(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhdx")
	if err := CreateVHDX(base, VHDXCreateOptions{Size: size, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	parent := randomBytes(t, size)
	b, err := Open(base, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(parent, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(dir, "child.vhdx")
	if err := CreateVHDX(child, VHDXCreateOptions{Parent: base}); err != nil {
		t.Fatal(err)
	}
	d, err := Open(child, false)
	if err != nil {
		t.Fatal(err)
	}
	d.BatchAllocations()
	model := bytes.Clone(parent)
	randomWrites(t, newRand(t), d, model, 40)
	if got, _ := snapshotDisk(t, child, "s0.vhdx"); !bytes.Equal(got, parent) {
		t.Fatalf("before Flush, the file's disk differs from its parent at %d", firstDiff(got, parent))
	}
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("reads through the open disk differ at %d", firstDiff(got, model))
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := snapshotDisk(t, child, "s1.vhdx"); !bytes.Equal(got, model) {
		t.Fatalf("after Flush, the file's disk differs at %d", firstDiff(got, model))
	}
	randomWrites(t, newRand(t), d, model, 40)
	snapshotDisk(t, child, "s2.vhdx") // consistent, whatever it holds
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := snapshotDisk(t, child, "s3.vhdx"); !bytes.Equal(got, model) {
		t.Fatalf("after Close, the file's disk differs at %d", firstDiff(got, model))
	}
}

// TestFileExtent checks that the extents FileExtent reports hold the virtual
// disk's bytes in the file, and that it reports none where bytes are not
// stored as they are.
func TestFileExtent(t *testing.T) {
	const size, bs = 8 << 20, 1 << 20
	p := filepath.Join(t.TempDir(), "d.vhdx")
	if err := CreateVHDX(p, VHDXCreateOptions{Size: size, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	data := randomBytes(t, 3*bs)
	if _, err := d.WriteAt(data, 2*bs); err != nil { // blocks 2–4
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		off, n, want int64
		ok           bool
	}{
		{0, bs, 0, false},                // not allocated
		{2 * bs, bs, bs, true},           // a whole block
		{2*bs + 100, bs, bs - 100, true}, // up to the end of the block
		{3*bs + 7, 10, 10, true},         // inside a block
		{5 * bs, 4096, 0, false},         // past the written blocks
		{size, 1, 0, false},              // past the end
	} {
		fo, n, ok := d.FileExtent(c.off, c.n)
		if ok != c.ok || n != c.want {
			t.Fatalf("FileExtent(%d, %d) = %d, %d, %v; want length %d, %v", c.off, c.n, fo, n, ok, c.want, c.ok)
		}
		if !ok {
			continue
		}
		got := make([]byte, n)
		if _, err := f.ReadAt(got, fo); err != nil {
			t.Fatal(err)
		}
		if want := data[c.off-2*bs : c.off-2*bs+n]; !bytes.Equal(got, want) {
			t.Fatalf("FileExtent(%d, %d): the file at %d differs at %d", c.off, c.n, fo, firstDiff(got, want))
		}
	}
}
