package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// probeCase builds the content of one disk file.
type probeCase struct {
	name    string
	build   func(t *testing.T, dir string) []byte
	format  Format
	content string
	err     error
}

func diskBytes(t *testing.T, dir string, create func(p string) error) []byte {
	t.Helper()
	p := filepath.Join(dir, "d")
	if err := create(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vhdBytes(typ DiskType) func(t *testing.T, dir string) []byte {
	return func(t *testing.T, dir string) []byte {
		return diskBytes(t, dir, func(p string) error {
			d, err := Create(p, CreateOptions{Type: typ, Size: 4 << 20})
			if err != nil {
				return err
			}
			return d.Close()
		})
	}
}

func TestProbe(t *testing.T) {
	ext4 := make([]byte, 8192)
	binary.LittleEndian.PutUint16(ext4[1024+56:], 0xEF53)
	ntfs := make([]byte, 4096)
	copy(ntfs[3:], "NTFS    ")
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xAA
	mbr[446+4] = 0x83
	gpt := append([]byte(nil), mbr...)
	copy(gpt[512:], "EFI PART")
	cut := func(b func(*testing.T, string) []byte, n int) func(*testing.T, string) []byte {
		return func(t *testing.T, dir string) []byte { x := b(t, dir); return x[:len(x)-n] }
	}
	grow := func(b func(*testing.T, string) []byte, n int) func(*testing.T, string) []byte {
		return func(t *testing.T, dir string) []byte { return append(b(t, dir), make([]byte, n)...) }
	}
	lit := func(b []byte) func(*testing.T, string) []byte { return func(*testing.T, string) []byte { return b } }
	cases := []probeCase{
		{name: "vhdx", build: func(t *testing.T, dir string) []byte {
			return diskBytes(t, dir, func(p string) error { return CreateVHDX(p, VHDXCreateOptions{Size: 4 << 20}) })
		}, format: FormatVHDX},
		{name: "vhd fixed", build: vhdBytes(Fixed), format: FormatVHD},
		{name: "vhd dynamic", build: vhdBytes(Dynamic), format: FormatVHD},
		{name: "vhd fixed, footer cut by 100 bytes", build: cut(vhdBytes(Fixed), 100), format: FormatVHD, err: ErrTruncated},
		{name: "vhd dynamic, footer cut off", build: cut(vhdBytes(Dynamic), 512), format: FormatVHD, err: ErrTruncated},
		{name: "vhd fixed, 600 bytes appended", build: grow(vhdBytes(Fixed), 600), format: FormatVHD, err: ErrInvalidFormat},
		{name: "ext4", build: lit(ext4), format: FormatRaw, content: "ext4"},
		{name: "ntfs", build: lit(ntfs), format: FormatRaw, content: "ntfs"},
		{name: "mbr", build: lit(mbr), format: FormatRaw, content: "mbr"},
		{name: "gpt", build: lit(gpt), format: FormatRaw, content: "gpt"},
		{name: "zeros", build: lit(make([]byte, 1<<20)), err: ErrUnknownFormat},
		{name: "empty", build: lit(nil), err: ErrUnknownFormat},
		{name: "text", build: lit([]byte("hello, world\n")), err: ErrUnknownFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.build(t, t.TempDir())
			p, err := Probe(bytes.NewReader(b), int64(len(b)))
			if c.err != nil {
				if !errors.Is(err, c.err) || !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("Probe = %+v, %v; want an error matching %v and ErrInvalidFormat", p, err, c.err)
				}
			} else if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if p.Format != c.format || p.Content != c.content {
				t.Errorf("Probe = %+v, want format %v content %q", p, c.format, c.content)
			}
		})
	}
}

func TestFormatFromName(t *testing.T) {
	for name, want := range map[string]Format{"a.vhdx": FormatVHDX, "B.VHD": FormatVHD, "c.img": FormatRaw, "d.raw": FormatRaw, "disk": 0, "e.qcow2": 0} {
		if got := FormatFromName(name); got != want {
			t.Errorf("FormatFromName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzProbe: Probe never panics, and what it calls a VHD or VHDX without error
// Open can at least start reading (an error, not a panic, otherwise).
func FuzzProbe(f *testing.F) {
	dir := f.TempDir()
	for i, typ := range []DiskType{Fixed, Dynamic} {
		p := filepath.Join(dir, string(rune('a'+i)))
		d, err := Create(p, CreateOptions{Type: typ, Size: 1 << 20})
		if err != nil {
			f.Fatal(err)
		}
		d.Close()
		b, _ := os.ReadFile(p)
		f.Add(b)
		f.Add(b[:len(b)-7])
	}
	f.Add(make([]byte, 4096))
	f.Add([]byte("vhdxfile"))
	f.Add([]byte("conectix"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err == nil && p.Format == 0 {
			t.Fatalf("no format and no error")
		}
		if err != nil && !errors.Is(err, ErrInvalidFormat) {
			t.Fatalf("error %v does not match ErrInvalidFormat", err)
		}
		if err == nil && p.Format == FormatVHD && len(b) < FooterSize {
			t.Fatalf("VHD of %d bytes", len(b))
		}
	})
}
