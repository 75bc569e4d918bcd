package vhd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sevenZipVHDXIn extracts a VHDX with 7-Zip run in dir, where 7-Zip finds the
// parents of a differencing disk through their relative_path.
func sevenZipVHDXIn(t *testing.T, dir, name string) []byte {
	t.Helper()
	cmd := exec.Command("7zz", "e", "-tVHDX", "-so", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("7zz e -tVHDX -so %s: %v", name, err)
	}
	return out
}

// sevenZipTest runs 7zz t on a disk and fails unless it reports no error.
func sevenZipTest(t *testing.T, dir, name, typ string) {
	t.Helper()
	cmd := exec.Command("7zz", "t", "-t"+typ, name)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Everything is Ok")) || bytes.Contains(out, []byte("ERROR")) {
		t.Fatalf("7zz t %s: %v\n%s", name, err, out)
	}
}

func writeModel(t *testing.T, path string, model []byte, writes int) {
	t.Helper()
	d, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, newRand(t), d, model, writes)
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("%s: read back differs at %d", path, firstDiff(got, model))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestVHDXDifferencingChain builds base, middle and top disks, each written at
// random places (partial sectors and blocks included), and compares the chain
// with a model and with 7-Zip's extraction of each level.
func TestVHDXDifferencingChain(t *testing.T) {
	requireTool(t, "7zz", "7zip")
	for _, lss := range []uint32{512, 4096} {
		t.Run(fmt.Sprint("sector", lss), func(t *testing.T) {
			dir := t.TempDir()
			const size = 24 << 20
			model := make([]byte, size)
			names := []string{"base.vhdx", "middle.vhdx", "top.vhdx"}
			var levels [][]byte
			for i, name := range names {
				p := filepath.Join(dir, name)
				opts := VHDXCreateOptions{Size: size, BlockSize: 1 << 20, LogicalSectorSize: lss}
				if i > 0 {
					opts = VHDXCreateOptions{Parent: filepath.Join(dir, names[i-1])}
				}
				if err := CreateVHDX(p, opts); err != nil {
					t.Fatal(err)
				}
				writeModel(t, p, model, 25)
				levels = append(levels, bytes.Clone(model))
			}
			for i, name := range names {
				d, err := Open(filepath.Join(dir, name), true)
				if err != nil {
					t.Fatal(err)
				}
				wantType := Differencing
				if i == 0 {
					wantType = Dynamic
				}
				if d.Type() != wantType || d.Size() != size || d.LogicalSectorSize() != int(lss) {
					t.Errorf("%s: type %v, size %d, sector %d", name, d.Type(), d.Size(), d.LogicalSectorSize())
				}
				if got := readAll(t, d); !bytes.Equal(got, levels[i]) {
					t.Errorf("%s: differs from the model at %d", name, firstDiff(got, levels[i]))
				}
				d.Close()
				sevenZipTest(t, dir, name, "VHDX")
				if got := sevenZipVHDXIn(t, dir, name); !bytes.Equal(got, levels[i]) {
					t.Errorf("%s: 7zz extracts %d bytes differing at %d", name, len(got), firstDiff(got, levels[i]))
				}
			}
			if _, err := exec.LookPath("vhdiinfo"); err == nil {
				top, err := Open(filepath.Join(dir, "top.vhdx"), true)
				if err != nil {
					t.Fatal(err)
				}
				linkage := strings.Trim(top.VHDXInfo().ParentLocator.Get(VHDXKeyParentLinkage), "{}")
				middleWrite := top.Parent().VHDXInfo().Header.DataWriteGUID.String()
				top.Close()
				if linkage != middleWrite {
					t.Errorf("parent_linkage %s, the parent's DataWriteGuid %s", linkage, middleWrite)
				}
				out := string(run(t, "vhdiinfo", filepath.Join(dir, "top.vhdx")))
				for _, want := range []string{"VHDX", "Differential", fmt.Sprintf("(%d bytes)", size), "Parent identifier\t: " + linkage} {
					if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
						t.Errorf("vhdiinfo output lacks %q:\n%s", want, out)
					}
				}
			}
		})
	}
}

// TestVHDXParentLinkage: writing the parent after the child was made breaks the
// link, and the child then refuses to open, as Windows and 7-Zip do.
func TestVHDXParentLinkage(t *testing.T) {
	dir := t.TempDir()
	base, child := filepath.Join(dir, "base.vhdx"), filepath.Join(dir, "child.vhdx")
	if err := CreateVHDX(base, VHDXCreateOptions{Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := CreateVHDX(child, VHDXCreateOptions{Parent: base}); err != nil {
		t.Fatal(err)
	}
	d, err := Open(child, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Parent() == nil || d.Parent().Path() != base {
		t.Fatalf("parent %v", d.Parent())
	}
	l := d.VHDXInfo().ParentLocator
	if l == nil || l.Get(VHDXKeyRelativePath) != `.\base.vhdx` || !strings.HasPrefix(l.Get(VHDXKeyParentLinkage), "{") {
		t.Fatalf("locator %+v", l)
	}
	d.Close()
	// The parent moves with the child: relative_path still finds it.
	moved := filepath.Join(dir, "moved")
	if err := os.Mkdir(moved, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, child} {
		if err := os.Rename(p, filepath.Join(moved, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	base, child = filepath.Join(moved, "base.vhdx"), filepath.Join(moved, "child.vhdx")
	if d, err = Open(child, true); err != nil {
		t.Fatal(err)
	}
	d.Close()
	p, err := Open(base, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteAt([]byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := Open(child, true); !errors.Is(err, ErrParentMismatch) {
		t.Fatalf("child of a written parent: %v", err)
	}
	os.Remove(base)
	if _, err := Open(child, true); !errors.Is(err, ErrParentNotFound) {
		t.Fatalf("child without parent: %v", err)
	}
}

// TestCreateVHDXFixed: a fixed VHDX passes qemu-img check, has every block
// allocated, and reads back what was written as qemu sees it.
func TestCreateVHDXFixed(t *testing.T) {
	requireQemu(t)
	p := filepath.Join(t.TempDir(), "fixed.vhdx")
	const size = 20<<20 + 4096
	if err := CreateVHDX(p, VHDXCreateOptions{Size: size, Fixed: true, BlockSize: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	writeModel(t, p, model, 20)
	run(t, "qemu-img", "check", p)
	qi := qemuInfo(t, p)
	if qi.Format != "vhdx" || qi.VirtualSize != size {
		t.Errorf("qemu-img info %+v", qi)
	}
	if got := qemuVHDXRaw(t, p); !bytes.Equal(got, model) {
		t.Errorf("qemu reads differ at %d", firstDiff(got, model))
	}
	d, err := Open(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Type() != Fixed {
		t.Errorf("type %v", d.Type())
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4<<20 + 11*(2<<20)); st.Size() != want {
		t.Errorf("file size %d, want %d", st.Size(), want)
	}
}

// TestCreateVHDX4K: a dynamic VHDX with 4096-byte logical sectors, checked with
// 7-Zip (qemu cannot open it).
func TestCreateVHDX4K(t *testing.T) {
	requireTool(t, "7zz", "7zip")
	dir := t.TempDir()
	p := filepath.Join(dir, "4k.vhdx")
	const size = 16 << 20
	if err := CreateVHDX(p, VHDXCreateOptions{Size: size, LogicalSectorSize: 4096}); err != nil {
		t.Fatal(err)
	}
	if err := CreateVHDX(filepath.Join(dir, "odd.vhdx"), VHDXCreateOptions{Size: size + 512, LogicalSectorSize: 4096}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("size not a multiple of 4096: %v", err)
	}
	model := make([]byte, size)
	writeModel(t, p, model, 20)
	sevenZipTest(t, dir, "4k.vhdx", "VHDX")
	if got := sevenZipVHDXIn(t, dir, "4k.vhdx"); !bytes.Equal(got, model) {
		t.Errorf("7zz extracts data differing at %d", firstDiff(got, model))
	}
	out := run(t, "7zz", "l", p)
	if !bytes.Contains(out, []byte("LogicalSectorSize: 4096")) && !bytes.Contains(out, []byte("4096")) {
		t.Errorf("7zz l:\n%s", out)
	}
}

// qemuVHDXRaw is the virtual disk of a VHDX as qemu-img convert -O raw reads it.
func qemuVHDXRaw(t *testing.T, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
