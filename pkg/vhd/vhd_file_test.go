package vhd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var testTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// randomWrites writes count random ranges of random data through d and into model.
// Some writes are sector aligned, some not, some cross block boundaries.
func randomWrites(t *testing.T, r *rand.Rand, d *Disk, model []byte, count int) {
	t.Helper()
	size := int64(len(model))
	if testing.Short() {
		count = max(count/4, 1)
	}
	for range count {
		n := r.Int64N(min(size, 300<<10)) + 1
		if r.IntN(2) == 0 {
			n = (n + SectorSize - 1) / SectorSize * SectorSize
			n = min(n, size)
		}
		off := r.Int64N(size - n + 1)
		if r.IntN(2) == 0 {
			off = off / SectorSize * SectorSize
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(8) == 0 {
			clear(b) // zero writes must not lose data nor need allocation
		}
		if _, err := d.WriteAt(b, off); err != nil {
			t.Fatalf("WriteAt(%d bytes at %d): %v", n, off, err)
		}
		copy(model[off:], b)
	}
}

// readAll reads the whole virtual disk through d.
func readAll(t *testing.T, d *Disk) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	// Odd-sized reads exercise block and sector boundaries.
	for off := int64(0); off < d.Size(); {
		n := min(int64(777777), d.Size()-off)
		if _, err := d.ReadAt(b[off:off+n], off); err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
		off += n
	}
	return b
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// qemuRaw converts a VHD to raw with qemu-img and returns the bytes.
func qemuRaw(t *testing.T, path string, imageOpts bool) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	if imageOpts {
		run(t, "qemu-img", "convert", "--image-opts", "driver=vpc,force_size_calc=current_size,file.filename="+path, "-O", "raw", out)
	} else {
		run(t, "qemu-img", "convert", "-f", "vpc", "-O", "raw", path, out)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qemuCheck runs qemu-img check. qemu 7.2 has no check for vpc and exits 63 ("This
// image format does not support checks"); that is accepted, anything else but 0 is not.
func qemuCheck(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "-f", "vpc", path).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 63 {
		return
	}
	if err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
}

func TestCreateQemuOracle(t *testing.T) {
	requireQemu(t)
	tests := []struct {
		name      string
		typ       DiskType
		size      int64
		blockSize uint32
	}{
		{"fixed 10MiB", Fixed, 10 << 20, 0},
		{"fixed odd size", Fixed, 3<<20 + 512*7, 0},
		{"dynamic 10MiB", Dynamic, 10 << 20, 0},
		{"dynamic 64KiB blocks odd size", Dynamic, 5<<20 + 512*3, 64 << 10},
		{"dynamic 4KiB blocks", Dynamic, 1 << 20, 4096},
		{"dynamic 3GiB", Dynamic, 3 << 30, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRand(t)
			path := filepath.Join(t.TempDir(), "disk.vhd")
			d, err := Create(path, CreateOptions{Type: tt.typ, Size: tt.size, BlockSize: tt.blockSize, UniqueID: [16]byte{1, 2, 3}, Timestamp: testTime})
			if err != nil {
				t.Fatal(err)
			}
			if d.Size() != tt.size {
				t.Errorf("Size() = %d, want %d", d.Size(), tt.size)
			}
			// The empty disk first.
			qemuCheck(t, path)
			for _, args := range [][]string{{"-f", "vpc", path}, {"--image-opts", "driver=vpc,force_size_calc=current_size,file.filename=" + path}} {
				if info := qemuInfo(t, args...); info.Format != "vpc" || info.VirtualSize != tt.size {
					t.Errorf("qemu-img info %v: format %q size %d, want vpc %d", args, info.Format, info.VirtualSize, tt.size)
				}
			}
			if tt.size > 64<<20 {
				// Large disks: a few writes, checked through qemu-io reads.
				if _, err := d.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), tt.size-8192); err != nil {
					t.Fatal(err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				run(t, "qemu-io", "-f", "vpc", "-r", "-c", "read -P 0x5a "+strconv.FormatInt(tt.size-8192, 10)+" 4096", "-c", "read -P 0 0 1M", path)
				return
			}
			model := make([]byte, tt.size)
			randomWrites(t, r, d, model, 40)
			if got := readAll(t, d); !bytes.Equal(got, model) {
				t.Fatalf("read back through Disk differs from the model at %d", firstDiff(got, model))
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, path)
			if got := qemuRaw(t, path, false); !bytes.Equal(got, model) {
				t.Fatalf("qemu-img convert differs from the model at %d (len %d, want %d)", firstDiff(got, model), len(got), len(model))
			}
			otherOracles(t, path, tt.typ, model)
			sum := fileSHA(t, path)
			d, err = Open(path, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, d); !bytes.Equal(got, model) {
				t.Fatalf("reopened disk differs from the model at %d", firstDiff(got, model))
			}
			d.Close()
			if fileSHA(t, path) != sum {
				t.Fatal("a read-only open modified the file")
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestFixedIsSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fixed.vhd")
	d, err := Create(path, CreateOptions{Type: Fixed, Size: 1 << 30, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 1<<30+FooterSize {
		t.Errorf("file size %d, want %d", fi.Size(), 1<<30+FooterSize)
	}
	if n, ok := allocatedBytes(fi); ok && n > 1<<20 {
		t.Errorf("fixed disk uses %d bytes on the host, want a sparse file", n)
	}
}

func TestCreateDeterministic(t *testing.T) {
	dir := t.TempDir()
	var sums [][32]byte
	for i := range 2 {
		path := filepath.Join(dir, "d"+strconv.Itoa(i)+".vhd")
		d, err := Create(path, CreateOptions{Type: Dynamic, Size: 8 << 20, UniqueID: [16]byte{7}, Timestamp: testTime})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.WriteAt([]byte("hello"), 3<<20+5); err != nil {
			t.Fatal(err)
		}
		d.Close()
		sums = append(sums, fileSHA(t, path))
	}
	if sums[0] != sums[1] {
		t.Error("same options and writes gave different files")
	}
}

// TestQemuCreatedImages opens images made and written by qemu and compares their
// contents with qemu-img convert.
func TestQemuCreatedImages(t *testing.T) {
	requireQemu(t)
	tests := []struct {
		name string
		opts string
		size string
	}{
		{"dynamic", "subformat=dynamic", "10M"},
		{"dynamic CHS-rounded", "subformat=dynamic", "5000K"},
		{"dynamic force_size", "subformat=dynamic,force_size=on", "7M"},
		{"fixed force_size", "subformat=fixed,force_size=on", "10M"},
		{"fixed CHS-rounded", "subformat=fixed", "3M"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.vhd")
			run(t, "qemu-img", "create", "-q", "-f", "vpc", "-o", tt.opts, path, tt.size)
			run(t, "qemu-io", "-f", "vpc",
				"-c", "write -P 0xab 1M 64k",
				"-c", "write -P 0x12 0 512",
				"-c", "write -P 0xcd 2047k 3k",
				path)
			want := qemuRaw(t, path, false)
			sum := fileSHA(t, path)
			d, err := Open(path, true)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Size() != int64(len(want)) {
				t.Fatalf("Size() = %d, qemu-img convert gave %d bytes", d.Size(), len(want))
			}
			if got := readAll(t, d); !bytes.Equal(got, want) {
				t.Fatalf("contents differ from qemu-img convert at %d", firstDiff(got, want))
			}
			if fileSHA(t, path) != sum {
				t.Fatal("a read-only open modified the file")
			}
		})
	}
}

// TestWriteQemuCreatedDynamic writes into a qemu-made dynamic disk and has qemu read it.
func TestWriteQemuCreatedDynamic(t *testing.T) {
	requireQemu(t)
	r := newRand(t)
	path := filepath.Join(t.TempDir(), "q.vhd")
	run(t, "qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic", path, "9M")
	run(t, "qemu-io", "-f", "vpc", "-c", "write -P 0xab 1M 64k", path)
	d, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	model := readAll(t, d)
	randomWrites(t, r, d, model, 20)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := qemuRaw(t, path, false); !bytes.Equal(got, model) {
		t.Fatalf("qemu-img convert differs from the model at %d", firstDiff(got, model))
	}
}

func TestDifferencing(t *testing.T) {
	r := newRand(t)
	dir := t.TempDir()
	const size = 6<<20 + 512*5
	parentPath := filepath.Join(dir, "base.vhd")
	parent, err := Create(parentPath, CreateOptions{Type: Dynamic, Size: size, BlockSize: 1 << 20, UniqueID: [16]byte{0xAA}, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	randomWrites(t, r, parent, model, 20)
	if err := parent.Close(); err != nil {
		t.Fatal(err)
	}

	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	childPath := filepath.Join(sub, "child.vhd")
	child, err := Create(childPath, CreateOptions{Type: Differencing, Parent: parentPath, UniqueID: [16]byte{0xBB}, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	if child.Size() != size {
		t.Fatalf("child size %d, want the parent's %d", child.Size(), size)
	}
	if got := readAll(t, child); !bytes.Equal(got, model) {
		t.Fatalf("empty child differs from the parent at %d", firstDiff(got, model))
	}
	randomWrites(t, r, child, model, 40)
	if got := readAll(t, child); !bytes.Equal(got, model) {
		t.Fatalf("child differs from the model at %d", firstDiff(got, model))
	}
	if err := child.Close(); err != nil {
		t.Fatal(err)
	}

	h := func() *DynamicHeader {
		d, err := Open(childPath, true)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if d.Parent() == nil || d.Parent().Footer().UniqueID != [16]byte{0xAA} {
			t.Fatal("parent not opened")
		}
		if got := readAll(t, d); !bytes.Equal(got, model) {
			t.Fatalf("reopened child differs from the model at %d", firstDiff(got, model))
		}
		return d.Header()
	}()
	if h.ParentName != "base.vhd" || h.ParentUniqueID != [16]byte{0xAA} {
		t.Errorf("header parent name %q id %X", h.ParentName, h.ParentUniqueID)
	}
	if h.ParentLocators[0].PlatformCode != PlatformWindowsRelative || h.ParentLocators[1].PlatformCode != PlatformWindowsAbsolute {
		t.Errorf("parent locators %+v", h.ParentLocators[:2])
	}

	// Moving both files keeps the relative locator valid.
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	movedChild := filepath.Join(moved, "sub", "child.vhd")
	sum := fileSHA(t, movedChild)
	d, err := Open(movedChild, true)
	if err != nil {
		t.Fatalf("open after moving the chain: %v", err)
	}
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("moved child differs from the model at %d", firstDiff(got, model))
	}
	d.Close()
	if fileSHA(t, movedChild) != sum {
		t.Fatal("a read-only open modified the file")
	}

	// Another disk with the parent's name but another unique ID.
	movedParent := filepath.Join(moved, "base.vhd")
	if err := os.Remove(movedParent); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(movedChild, true); !errors.Is(err, ErrParentNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open without parent: %v, want ErrParentNotFound", err)
	}
	other, err := Create(movedParent, CreateOptions{Type: Dynamic, Size: size, UniqueID: [16]byte{0xCC}, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if _, err := Open(movedChild, true); !errors.Is(err, ErrParentMismatch) {
		t.Fatalf("open with a wrong parent: %v, want ErrParentMismatch", err)
	}
}

func TestDiskErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.vhd")
	d, err := Create(path, CreateOptions{Type: Dynamic, Size: 4 << 20, BlockSize: 1 << 20, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(bytes.Repeat([]byte{1}, 4096), 3<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{1}, 4<<20); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("write past the end: %v", err)
	}
	d.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("write to a read-only disk: %v", err)
	}
	ro.Close()

	if _, err := Create(path, CreateOptions{Type: Dynamic, Size: 1 << 20}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file: %v", err)
	}
	for _, o := range []CreateOptions{
		{Type: Dynamic, Size: 1000},
		{Type: Dynamic, Size: 1 << 20, BlockSize: 3000},
		{Type: 7, Size: 1 << 20},
		{Type: Differencing},
	} {
		if _, err := Create(filepath.Join(dir, "bad.vhd"), o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Create(%+v): %v, want ErrInvalidOptions", o, err)
		}
	}

	mutate := func(f func(b []byte) []byte) string {
		p := filepath.Join(t.TempDir(), "bad.vhd")
		if err := os.WriteFile(p, f(bytes.Clone(good)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	n := int64(len(good))
	tests := []struct {
		name      string
		mutate    func([]byte) []byte
		is        error
		structure string
		offset    int64
	}{
		{"empty", func(b []byte) []byte { return nil }, ErrTruncated, "footer", 0},
		{"cut footer", func(b []byte) []byte { return b[:n-100] }, ErrInvalidFormat, "footer", n - 100 - 512},
		{"cut block", func(b []byte) []byte {
			// Drop the block, keep a valid footer at the end.
			return append(b[:2048+512], b[n-512:]...)
		}, ErrInvalidFormat, "BAT", 1536 + 3*4},
		{"header checksum", func(b []byte) []byte { b[600]++; return b }, ErrChecksum, "dynamic header", 512 + 36},
		{"footer checksum", func(b []byte) []byte { b[n-1]++; return b }, ErrChecksum, "footer", n - 512 + 64},
		{"huge BAT", func(b []byte) []byte {
			h, _ := ParseDynamicHeader(b[512:])
			h.MaxTableEntries = 1 << 30
			hb, _ := h.MarshalBinary()
			copy(b[512:], hb)
			return b
		}, ErrTruncated, "BAT", 1536},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mutate(tt.mutate)
			sum := fileSHA(t, p)
			_, err := Open(p, true)
			if !errors.Is(err, tt.is) || !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("Open: %v, want %v", err, tt.is)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Structure != tt.structure || fe.Offset != tt.offset {
				t.Fatalf("Open: %v, want %s at offset %d", err, tt.structure, tt.offset)
			}
			if fileSHA(t, p) != sum {
				t.Fatal("a failed read-only open modified the file")
			}
		})
	}
}

// TestDifferencingChain writes through a child of a child, reopened writable, and
// checks every level against its model.
func TestDifferencingChain(t *testing.T) {
	r := newRand(t)
	dir := t.TempDir()
	const size = 3 << 20
	paths := []string{filepath.Join(dir, "a.vhd"), filepath.Join(dir, "b.vhd"), filepath.Join(dir, "c.vhd")}
	model := make([]byte, size)
	var models [][]byte
	for i, p := range paths {
		opts := CreateOptions{Type: Dynamic, Size: size, BlockSize: 512 << 10, UniqueID: [16]byte{byte(i + 1)}, Timestamp: testTime}
		if i > 0 {
			opts = CreateOptions{Type: Differencing, Parent: paths[i-1], BlockSize: 64 << 10, UniqueID: [16]byte{byte(i + 1)}, Timestamp: testTime}
		}
		d, err := Create(p, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopen writable: the parent locators are resolved here.
		if d, err = Open(p, false); err != nil {
			t.Fatal(err)
		}
		randomWrites(t, r, d, model, 15)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		models = append(models, bytes.Clone(model))
	}
	for i, p := range paths {
		d, err := Open(p, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, d); !bytes.Equal(got, models[i]) {
			t.Errorf("%s differs from its model at %d", filepath.Base(p), firstDiff(got, models[i]))
		}
		d.Close()
	}
}

// TestDifferencingOracles has 7-Zip read a differencing chain made here (qemu 7.2
// cannot open differencing VHDs) and vhdiinfo report its type and parent.
func TestDifferencingOracles(t *testing.T) {
	requireTool(t, "7zz", "7zip")
	requireTool(t, "vhdiinfo", "libvhdi-utils")
	r := newRand(t)
	dir := t.TempDir()
	const size = 5<<20 + 512*9
	base := filepath.Join(dir, "base.vhd")
	d, err := Create(base, CreateOptions{Type: Dynamic, Size: size, UniqueID: [16]byte{0x11, 0x22}, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	randomWrites(t, r, d, model, 20)
	d.Close()
	if got := sevenZipRaw(t, dir, "base.vhd"); !bytes.Equal(got, model) {
		t.Fatalf("7-Zip read of the dynamic parent differs from the model at %d (len %d)", firstDiff(got, model), len(got))
	}
	child, err := Create(filepath.Join(dir, "child.vhd"), CreateOptions{Type: Differencing, Parent: base, BlockSize: 256 << 10, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, r, child, model, 40)
	child.Close()
	if got := sevenZipRaw(t, dir, "child.vhd"); !bytes.Equal(got, model) {
		t.Fatalf("7-Zip read of the differencing child differs from the model at %d (len %d)", firstDiff(got, model), len(got))
	}
	out := string(run(t, "vhdiinfo", filepath.Join(dir, "child.vhd")))
	for _, want := range []string{"Disk type\t\t: Differential", "Media size\t\t: 5.0 MiB (5247488 bytes)", "Parent identifier\t: 11220000-0000-0000-0000-000000000000", "Parent filename\t\t: base.vhd"} {
		if !strings.Contains(out, want) {
			t.Errorf("vhdiinfo output lacks %q:\n%s", want, out)
		}
	}
}

// otherOracles checks a disk with 7-Zip and vhdiinfo when they are installed.
func otherOracles(t *testing.T, path string, typ DiskType, model []byte) {
	t.Helper()
	if _, err := exec.LookPath("7zz"); err == nil {
		if got := sevenZipRaw(t, filepath.Dir(path), filepath.Base(path)); !bytes.Equal(got, model) {
			t.Errorf("7-Zip read differs from the model at %d (len %d, want %d)", firstDiff(got, model), len(got), len(model))
		}
	} else {
		t.Log("7zz not installed (Debian package 7zip): 7-Zip oracle skipped")
	}
	if _, err := exec.LookPath("vhdiinfo"); err == nil {
		out := string(run(t, "vhdiinfo", path))
		wantType := map[DiskType]string{Fixed: "Fixed", Dynamic: "Dynamic", Differencing: "Differential"}[typ]
		for _, want := range []string{"Disk type\t\t: " + wantType, "(" + strconv.Itoa(len(model)) + " bytes)"} {
			if !strings.Contains(out, want) {
				t.Errorf("vhdiinfo output lacks %q:\n%s", want, out)
			}
		}
	} else {
		t.Log("vhdiinfo not installed (Debian package libvhdi-utils): vhdiinfo oracle skipped")
	}
}

// TestConcurrentWrites writes disjoint ranges from several goroutines; run with
// -race.
func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.vhd")
	const size = 8 << 20
	d, err := Create(path, CreateOptions{Type: Dynamic, Size: size, BlockSize: 256 << 10, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	model := make([]byte, size)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 32 {
				off := int64(g*size/4 + i*(size/4/32) + 100)
				b := bytes.Repeat([]byte{byte(g*32 + i + 1)}, 5000)
				if _, err := d.WriteAt(b, off); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, len(b))
				if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, b) {
					t.Errorf("read back at %d: %v", off, err)
					return
				}
			}
		}()
		for i := range 32 {
			off := g*size/4 + i*(size/4/32) + 100
			for j := range 5000 {
				model[off+j] = byte(g*32 + i + 1)
			}
		}
	}
	wg.Wait()
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("differs from the model at %d", firstDiff(got, model))
	}
}

// TestDynamicSectorBitmap: on a dynamic disk a sector whose bitmap bit is 0 reads
// as zeros whatever the block holds, and writing it sets the bit.
func TestDynamicSectorBitmap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.vhd")
	d, err := Create(path, CreateOptions{Type: Dynamic, Size: 1 << 20, BlockSize: 64 << 10, Timestamp: testTime})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(bytes.Repeat([]byte{0xEE}, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// Block 0 is the first block after the BAT; clear the bits of sectors 1 and 2.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := d.Header()
	boff := int64(h.TableOffset) + batBytes(h.MaxTableEntries)
	if _, err := f.WriteAt([]byte{0x9F}, boff); err != nil {
		t.Fatal(err)
	}
	f.Close()

	d, err = Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := bytes.Repeat([]byte{0xEE}, 2048)
	clear(want[512:1536])
	got := make([]byte, 2048)
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read with bits 1 and 2 cleared: %v\n% x", err, got[500:1540])
	}
	// A partial write into sector 2 completes it with zeros and sets its bit.
	if _, err := d.WriteAt([]byte{1, 2, 3}, 1024+10); err != nil {
		t.Fatal(err)
	}
	copy(want[1024+10:], []byte{1, 2, 3})
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after partial write: %v", err)
	}
	bm := make([]byte, 1)
	if _, err := d.vhd.f.ReadAt(bm, boff); err != nil || bm[0] != 0xBF {
		t.Fatalf("bitmap byte 0x%02X, want 0xBF (%v)", bm[0], err)
	}
}
