package vhd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// resizeAndCheck resizes the disk at p to size, checks that the model (grown
// with zeros or cut) reads back here, and returns the new model.
func resizeAndCheck(t *testing.T, p string, model []byte, size int64) []byte {
	t.Helper()
	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Resize(size); err != nil {
		t.Fatalf("Resize(%d): %v", size, err)
	}
	if d.Size() != size {
		t.Fatalf("size %d after Resize(%d)", d.Size(), size)
	}
	if int64(len(model)) < size {
		model = append(model, make([]byte, size-int64(len(model)))...)
	} else {
		model = model[:size]
	}
	// The new space is usable.
	tail := []byte("end of the resized disk")
	if _, err := d.WriteAt(tail, size-int64(len(tail))-1000); err != nil {
		t.Fatal(err)
	}
	copy(model[size-int64(len(tail))-1000:], tail)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(p, true); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("after resize to %d: differs at %d", size, firstDiff(got, model))
	}
	return model
}

// shrinkRefused checks that a shrink that would drop data fails with
// ErrShrinkUnsafe and leaves the file as it was.
func shrinkRefused(t *testing.T, p string, size int64) {
	t.Helper()
	before := fileSHA(t, p)
	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Resize(size); !errors.Is(err, ErrShrinkUnsafe) {
		t.Fatalf("Resize(%d) over data: %v", size, err)
	}
	d.Close()
	if fileSHA(t, p) != before {
		t.Fatal("refused shrink modified the file")
	}
}

func TestResizeVHD(t *testing.T) {
	requireQemu(t)
	for _, typ := range []DiskType{Fixed, Dynamic} {
		t.Run(typ.String(), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.vhd")
			// 512 KiB blocks: the 512-byte BAT holds 128 entries (64 MiB), so
			// growing to 100 MiB moves the first blocks out of the BAT's way.
			d, err := Create(p, CreateOptions{Type: typ, Size: 4 << 20, BlockSize: 512 << 10})
			if err != nil {
				t.Fatal(err)
			}
			model := make([]byte, 4<<20)
			randomWrites(t, newRand(t), d, model, 10)
			d.Close()
			shrinkRefused(t, p, 1<<20)
			model = resizeAndCheck(t, p, model, 100<<20)
			if got := qemuRaw(t, p, true); !bytes.Equal(got, model) {
				t.Fatalf("qemu reads the grown disk differently at %d", firstDiff(got, model))
			}
			otherOracles(t, p, typ, model)
			// Shrinking back over the zeros (and the tail written above) is refused;
			// shrinking over zeros only is allowed.
			shrinkRefused(t, p, 8<<20)
			if d, err = Open(p, false); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteAt(make([]byte, 2000), 100<<20-2000); err != nil {
				t.Fatal(err)
			}
			d.Close()
			copy(model[100<<20-2000:], make([]byte, 2000))
			if typ == Fixed {
				model = resizeAndCheck(t, p, model, 8<<20)
				if got := qemuRaw(t, p, true); !bytes.Equal(got, model) {
					t.Fatalf("qemu reads the shrunk disk differently at %d", firstDiff(got, model))
				}
			}
		})
	}
}

func TestResizeVHDX(t *testing.T) {
	requireQemu(t)
	for _, fixed := range []bool{true, false} {
		t.Run(fmt.Sprint("fixed=", fixed), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.vhdx")
			if err := CreateVHDX(p, VHDXCreateOptions{Size: 6 << 20, BlockSize: 1 << 20, Fixed: fixed}); err != nil {
				t.Fatal(err)
			}
			model := make([]byte, 6<<20)
			writeModel(t, p, model, 10)
			shrinkRefused(t, p, 1<<20)
			model = resizeAndCheck(t, p, model, 20<<20)
			run(t, "qemu-img", "check", p)
			if qi := qemuInfo(t, p); qi.VirtualSize != 20<<20 {
				t.Errorf("qemu-img info: virtual size %d", qi.VirtualSize)
			}
			if got := qemuVHDXRaw(t, p); !bytes.Equal(got, model) {
				t.Fatalf("qemu reads the grown disk differently at %d", firstDiff(got, model))
			}
			if fixed {
				return
			}
			// 1 MiB of BAT holds 131072 entries: 200 GiB needs a larger BAT,
			// written at the end of the file and switched to through the log.
			const big = 200 << 30
			d, err := Open(p, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Resize(big); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteAt([]byte("far"), big-4096); err != nil {
				t.Fatal(err)
			}
			bat, _ := d.VHDXInfo().Regions.Region(VHDXRegionBAT)
			d.Close()
			if bat.FileOffset == 3<<20 || bat.Length < 2<<20 {
				t.Errorf("BAT region %+v not moved", bat)
			}
			run(t, "qemu-img", "check", p)
			if _, err := exec.LookPath("7zz"); err == nil {
				// 7zz l checks the structures (both region tables identical, no
				// BAT overlap) without reading 200 GiB.
				if out := run(t, "7zz", "l", "-tVHDX", p); bytes.Contains(out, []byte("ERROR")) {
					t.Errorf("7zz l:\n%s", out)
				}
			}
			if qi := qemuInfo(t, p); qi.VirtualSize != big {
				t.Errorf("qemu-img info: virtual size %d", qi.VirtualSize)
			}
			out := run(t, "qemu-io", "-f", "vhdx", "-r", "-c", fmt.Sprintf("read -P 0 %d 4096", 30<<20), "-c", fmt.Sprintf("read -v %d 3", int64(big-4096)), p)
			if !bytes.Contains(out, []byte("far")) {
				t.Errorf("qemu-io:\n%s", out)
			}
			if got := qemuVHDXRawPrefix(t, p, 20<<20); !bytes.Equal(got, model) {
				t.Fatalf("qemu reads the first 20 MiB differently at %d", firstDiff(got, model))
			}
		})
	}
}

// qemuVHDXRawPrefix reads the first n bytes of a VHDX with qemu-io.
func qemuVHDXRawPrefix(t *testing.T, p string, n int64) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "prefix.raw")
	run(t, "qemu-img", "dd", "-f", "vhdx", "-O", "raw", "bs=1M", fmt.Sprintf("count=%d", n>>20), "if="+p, "of="+out)
	return readFileT(t, out)
}

func readFileT(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
