package vhd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyFrom copies ranges of a file into every kind of disk (copy_file_range
// where the disk stores them contiguously, a buffer elsewhere) and reads them
// back.
func TestCopyFrom(t *testing.T) {
	dir := t.TempDir()
	const size = 6 << 20
	src := randomBytes(t, size)
	srcPath := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(srcPath, src, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := filepath.Join(dir, "base.vhdx")
	if err := CreateVHDX(base, VHDXCreateOptions{Size: size, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	makers := map[string]func(p string) error{
		"fixed.vhd": func(p string) error {
			d, err := Create(p, CreateOptions{Type: Fixed, Size: size})
			closeIf(d)
			return err
		},
		"dynamic.vhd": func(p string) error {
			d, err := Create(p, CreateOptions{Type: Dynamic, Size: size})
			closeIf(d)
			return err
		},
		"fixed.vhdx": func(p string) error {
			return CreateVHDX(p, VHDXCreateOptions{Size: size, Fixed: true, BlockSize: 1 << 20})
		},
		"dynamic.vhdx": func(p string) error { return CreateVHDX(p, VHDXCreateOptions{Size: size, BlockSize: 1 << 20}) },
		"child.vhdx":   func(p string) error { return CreateVHDX(p, VHDXCreateOptions{Parent: base}) },
	}
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := mk(p); err != nil {
				t.Fatal(err)
			}
			d, err := Open(p, false)
			if err != nil {
				t.Fatal(err)
			}
			model := make([]byte, size)
			// Unaligned, block-crossing ranges, one rewriting an allocated block.
			for _, r := range [][3]int64{{0, 0, 1 << 20}, {777, 1<<20 + 4000, 2<<20 + 3}, {5 << 20, 100, 4096}, {12345, 5<<20 + 10, 1<<20 - 10}} {
				if err := d.CopyFrom(f, r[0], r[1], r[2]); err != nil {
					t.Fatalf("CopyFrom(%v): %v", r, err)
				}
				copy(model[r[1]:r[1]+r[2]], src[r[0]:r[0]+r[2]])
			}
			if err := d.CopyFrom(f, 0, size-10, 20); err == nil {
				t.Error("CopyFrom past the end succeeded")
			}
			d.Close()
			if d, err = Open(p, true); err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if got := readAll(t, d); !bytes.Equal(got, model) {
				t.Fatalf("differs at %d", firstDiff(got, model))
			}
		})
	}
}

func closeIf(d *Disk) {
	if d != nil {
		d.Close()
	}
}
