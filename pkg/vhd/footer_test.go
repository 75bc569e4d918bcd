package vhd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tar2ext4Footer builds a footer with hcsshim tar2ext4's field values.
func tar2ext4Footer(size int64, id [16]byte) *Footer {
	return &Footer{
		Features:       FeatureReserved,
		Version:        Version,
		DataOffset:     FixedDataOffset,
		CreatorVersion: 0x000A0000,
		OriginalSize:   uint64(size),
		CurrentSize:    uint64(size),
		DiskType:       DiskTypeFixed,
		UniqueID:       id,
	}
}

func TestFooterChecksumKnownAnswers(t *testing.T) {
	var seq [16]byte
	for i := range seq {
		seq[i] = byte(i)
	}
	tests := []struct {
		name string
		size int64
		id   [16]byte
		want uint32
	}{
		{"360448", 360448, [16]byte{}, 0xFFFFF391},
		{"1MiB", 1 << 20, [16]byte{}, 0xFFFFF47B},
		{"128GiB", 128 << 30, [16]byte{}, 0xFFFFF45B},
		{"360448 id 00..0F", 360448, seq, 0xFFFFF319},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tar2ext4Footer(tt.size, tt.id).MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			f, err := ParseFooter(b)
			if err != nil {
				t.Fatalf("ParseFooter: %v", err)
			}
			if f.Checksum != tt.want {
				t.Errorf("checksum = 0x%08X, want 0x%08X", f.Checksum, tt.want)
			}
		})
	}
}

func TestGeometryForSize(t *testing.T) {
	tests := []struct {
		size     int64
		c        uint16
		h, s     uint8
		capBytes int64
	}{
		{1 << 20, 30, 4, 17, 1044480},
		{10 << 20, 301, 4, 17, 10479616},
		{100 << 20, 1003, 12, 17, 104761344},
		{1 << 30, 2080, 16, 63, 1073479680},
		{20 << 30, 41610, 16, 63, 21474754560},
		{128 << 30, 65535, 16, 255, 136899993600},
	}
	for _, tt := range tests {
		g := GeometryForSize(tt.size)
		if g.Cylinders != tt.c || g.Heads != tt.h || g.SectorsPerTrack != tt.s {
			t.Errorf("GeometryForSize(%d) = %d/%d/%d, want %d/%d/%d", tt.size, g.Cylinders, g.Heads, g.SectorsPerTrack, tt.c, tt.h, tt.s)
		}
		if g.Capacity() != tt.capBytes {
			t.Errorf("GeometryForSize(%d).Capacity() = %d, want %d", tt.size, g.Capacity(), tt.capBytes)
		}
	}
}

func TestGeometryProperties(t *testing.T) {
	prev := int64(0)
	for size := int64(0); size < 200<<30; size = size*5/4 + 512*7 {
		g := GeometryForSize(size)
		c := g.Capacity()
		if c > size {
			t.Fatalf("size %d: capacity %d larger than size", size, c)
		}
		if c < prev {
			t.Fatalf("size %d: capacity %d smaller than for a smaller size (%d)", size, c, prev)
		}
		prev = c
		if g.Heads > 16 {
			t.Fatalf("size %d: %d heads", size, g.Heads)
		}
		switch g.SectorsPerTrack {
		case 17, 31, 63, 255:
		default:
			t.Fatalf("size %d: %d sectors per track", size, g.SectorsPerTrack)
		}
	}
}

func TestFooterRoundTripAndSingleByteFlips(t *testing.T) {
	f := NewFixedFooter(10<<20, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	b, _ := f.MarshalBinary()
	g, err := ParseFooter(b)
	if err != nil {
		t.Fatal(err)
	}
	g.Checksum = 0
	if *g != *f {
		t.Fatalf("round trip: got %+v, want %+v", g, f)
	}
	if got := TimeFromStamp(g.TimeStamp); !got.Equal(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)) {
		t.Errorf("time stamp = %v", got)
	}
	for i := range FooterSize {
		if i >= footerOffChecksum && i < footerOffChecksum+4 {
			continue
		}
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, err := ParseFooter(c); err == nil {
			t.Fatalf("flipping byte %d: no error", i)
		} else if !errors.Is(err, ErrInvalidFormat) {
			t.Fatalf("flipping byte %d: error %v does not match ErrInvalidFormat", i, err)
		}
	}
}

func TestParseFooterErrors(t *testing.T) {
	good, _ := NewFixedFooter(1<<20, Epoch, [16]byte{}).MarshalBinary()
	withType := func(dt DiskType, dataOff uint64, version uint32) []byte {
		f := NewFixedFooter(1<<20, Epoch, [16]byte{})
		f.DiskType, f.DataOffset, f.Version = dt, dataOff, version
		b, _ := f.MarshalBinary()
		return b
	}
	badSum := bytes.Clone(good)
	badSum[100] = 1
	tests := []struct {
		name   string
		b      []byte
		is     error
		offset int64
	}{
		{"truncated", good[:100], ErrTruncated, 100},
		{"cookie", append([]byte("conectiy"), good[8:]...), ErrInvalidFormat, 0},
		{"checksum", badSum, ErrChecksum, 64},
		{"version", withType(DiskTypeFixed, FixedDataOffset, 0x00020000), ErrUnsupported, 12},
		{"disk type", withType(5, FixedDataOffset, Version), ErrUnsupported, 60},
		{"fixed data offset", withType(DiskTypeFixed, 512, Version), ErrInvalidFormat, 16},
		{"dynamic data offset", withType(DiskTypeDynamic, FixedDataOffset, Version), ErrInvalidFormat, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFooterAt(tt.b, 1000)
			if !errors.Is(err, tt.is) || !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Structure != "footer" || fe.Offset != 1000+tt.offset {
				t.Fatalf("err = %#v, want a footer FormatError at %d", err, 1000+tt.offset)
			}
		})
	}
}

func TestAppendFixedFooterQemu(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := randomBytes(t, 1<<20+4096)
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	vhd := filepath.Join(dir, "disk.vhd")
	if err := os.WriteFile(vhd, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := AppendFixedFooterFile(vhd, time.Unix(1700000000, 0), [16]byte{9}); err != nil {
		t.Fatal(err)
	}
	opts := "driver=vpc,force_size_calc=current_size,file.filename=" + vhd
	info := qemuInfo(t, "--image-opts", opts)
	if info.Format != "vpc" || info.VirtualSize != int64(len(data)) {
		t.Errorf("qemu-img info: format %q size %d, want vpc %d", info.Format, info.VirtualSize, len(data))
	}
	run(t, "qemu-img", "compare", "--image-opts", opts, "driver=raw,file.filename="+raw)
}
