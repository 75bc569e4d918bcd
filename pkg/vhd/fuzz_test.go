package vhd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseFooter(f *testing.F) {
	var seq [16]byte
	for i := range seq {
		seq[i] = byte(i)
	}
	for _, ft := range []*Footer{
		NewFixedFooter(10<<20, testTime, seq),
		tar2ext4Footer(360448, [16]byte{}),
		{Features: 3, Version: Version, DataOffset: 512, CreatorApp: [4]byte{'q', 'e', 'm', 'u'}, CurrentSize: 1 << 40, DiskType: DiskTypeDynamic},
		{Features: 2, Version: Version, DataOffset: 512, CurrentSize: 1 << 20, DiskType: DiskTypeDifferencing, SavedState: 1},
	} {
		b, _ := ft.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, err := ParseFooter(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error %v does not match ErrInvalidFormat", err)
			}
			return
		}
		enc, err := ft.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Count(b[85:FooterSize], []byte{0}) == FooterSize-85 && !bytes.Equal(enc, b[:FooterSize]) {
			t.Fatalf("marshal of a footer with zero reserved bytes differs from the input")
		}
		ft2, err := ParseFooter(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		ft.Checksum, ft2.Checksum = 0, 0
		if *ft != *ft2 {
			t.Fatalf("round trip: %+v != %+v", ft, ft2)
		}
	})
}

func FuzzParseDynamicHeader(f *testing.F) {
	hs := []*DynamicHeader{
		{DataOffset: FixedDataOffset, TableOffset: 1536, HeaderVersion: Version, MaxTableEntries: 5, BlockSize: DefaultBlockSize},
		{DataOffset: FixedDataOffset, TableOffset: 1536, HeaderVersion: Version, MaxTableEntries: 1 << 20, BlockSize: 512,
			ParentUniqueID: [16]byte{1, 2}, ParentTimeStamp: 12345, ParentName: "base.vhd",
			ParentLocators: [8]ParentLocator{
				{PlatformCode: PlatformWindowsRelative, DataSpace: 1, DataLength: 24, DataOffset: 2048},
				{PlatformCode: PlatformWindowsAbsolute, DataSpace: 1, DataLength: 40, DataOffset: 2560},
			}},
	}
	for _, h := range hs {
		b, err := h.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseDynamicHeader(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error %v does not match ErrInvalidFormat", err)
			}
			return
		}
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal of a parsed header: %v", err)
		}
		h2, err := ParseDynamicHeader(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		h.Checksum, h2.Checksum = 0, 0
		if *h != *h2 {
			t.Fatalf("round trip: %+v != %+v", h, h2)
		}
	})
}

// FuzzOpen opens arbitrary bytes as a VHD and reads the first and last sector of
// every block (at most maxBlocks). Neither may panic, and a rejected file must give
// an error of this package's classes.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	add := func(name string, opts CreateOptions, writes ...int64) string {
		p := filepath.Join(dir, name)
		d, err := Create(p, opts)
		if err != nil {
			f.Fatal(err)
		}
		for _, off := range writes {
			if _, err := d.WriteAt([]byte("data written by a seed"), off); err != nil {
				f.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		return p
	}
	add("fixed.vhd", CreateOptions{Type: Fixed, Size: 8192, Timestamp: testTime}, 100)
	parent := add("dynamic.vhd", CreateOptions{Type: Dynamic, Size: 64 << 10, BlockSize: 4096, Timestamp: testTime, UniqueID: [16]byte{1}}, 0, 5000, 60000)
	add("diff.vhd", CreateOptions{Type: Differencing, Parent: parent, BlockSize: 4096, Timestamp: testTime}, 4000, 30000)

	const maxBlocks = 4096
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "fuzz.vhd")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := Open(p, true)
		if !bytes.Equal(mustReadT(t, p), b) {
			t.Fatal("a read-only open modified the file")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) && !errors.Is(err, ErrParentNotFound) && !errors.Is(err, ErrParentMismatch) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Open: unexpected error class: %v", err)
			}
			return
		}
		defer d.Close()
		// Writes to a writable open read back, also after reopening.
		if d.Size() >= SectorSize {
			w, err := Open(p, false)
			if err != nil {
				t.Fatalf("read-only open succeeded, writable open failed: %v", err)
			}
			pattern := bytes.Repeat([]byte("fuzz"), 40)
			offs := []int64{0, d.Size() - int64(len(pattern))}
			if offs[1] < int64(len(pattern)) {
				offs = offs[:1]
			}
			for _, o := range offs {
				if o < 0 {
					continue
				}
				if _, err := w.WriteAt(pattern, o); err != nil {
					t.Fatalf("WriteAt(%d): %v", o, err)
				}
			}
			w.Close()
			r, err := Open(p, true)
			if err != nil {
				t.Fatalf("reopen after writing: %v", err)
			}
			got := make([]byte, len(pattern))
			for _, o := range offs {
				if o < 0 {
					continue
				}
				if _, err := r.ReadAt(got, o); (err != nil && err != io.EOF) || !bytes.Equal(got, pattern) {
					t.Fatalf("read back at %d: %q, %v", o, got, err)
				}
			}
			r.Close()
		}
		step := int64(DefaultBlockSize)
		if h := d.Header(); h != nil {
			step = int64(h.BlockSize)
		}
		buf := make([]byte, SectorSize)
		for i, off := 0, int64(0); i < maxBlocks && off < d.Size(); i, off = i+1, off+step {
			for _, o := range []int64{off, min(off+step, d.Size()) - SectorSize} {
				if o < 0 {
					continue
				}
				if _, err := d.ReadAt(buf, o); err != nil && err != io.EOF && !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("ReadAt(%d): unexpected error class: %v", o, err)
				}
			}
		}
	})
}
