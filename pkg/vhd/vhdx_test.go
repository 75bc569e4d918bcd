package vhd

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

func TestCRC32CCheckValue(t *testing.T) {
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xE3069283 {
		t.Fatalf("CRC-32C check value 0x%08X", got)
	}
}

func TestVHDXRegionTableKnownAnswers(t *testing.T) {
	tests := []struct {
		name     string
		bat, md  uint64
		required bool
		want     uint32
	}{
		{"qemu layout", 0x200000, 0x300000, false, 0x2C6FCE83},
		{"windows layout", 0x300000, 0x200000, true, 0xC66B8CAE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &VHDXRegionTable{Entries: []VHDXRegion{
				{GUID: VHDXRegionBAT, FileOffset: tt.bat, Length: 1 << 20, Required: tt.required},
				{GUID: VHDXRegionMetadata, FileOffset: tt.md, Length: 1 << 20, Required: tt.required},
			}}
			b, err := rt.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b[16:32], []byte{0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08}) {
				t.Errorf("BAT GUID bytes % X", b[16:32])
			}
			got, err := ParseVHDXRegionTableAt(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got.Checksum != tt.want {
				t.Errorf("CRC-32C 0x%08X, want 0x%08X", got.Checksum, tt.want)
			}
		})
	}
}

// qemuVHDX creates a VHDX with qemu-img and returns its bytes and path.
func qemuVHDX(t *testing.T, opts string) (string, []byte) {
	t.Helper()
	requireQemu(t)
	p := filepath.Join(t.TempDir(), "q.vhdx")
	run(t, "qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, p, "64M")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestReadVHDXInfoQemu(t *testing.T) {
	for _, opts := range []string{"subformat=dynamic", "subformat=fixed,block_size=1M"} {
		t.Run(opts, func(t *testing.T) {
			_, b := qemuVHDX(t, opts)
			info, err := ReadVHDXInfo(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Creator) < 4 || info.Creator[:4] != "QEMU" {
				t.Errorf("creator %q", info.Creator)
			}
			if info.Header.Version != 1 || info.Header.LogOffset != 1<<20 || info.Header.LogLength == 0 || info.Header.LogGUID != (guid.GUID{}) {
				t.Errorf("header %+v", info.Header)
			}
			bat, ok1 := info.Regions.Region(VHDXRegionBAT)
			md, ok2 := info.Regions.Region(VHDXRegionMetadata)
			if !ok1 || !ok2 || bat.FileOffset != 2<<20 || md.FileOffset != bat.FileOffset+uint64(bat.Length) {
				t.Errorf("regions %+v", info.Regions.Entries)
			}

			// Damage header 1, then both headers.
			hdr1 := bytes.Clone(b)
			hdr1[vhdxHeader1Offset+100] ^= 1
			info2, err := ReadVHDXInfo(bytes.NewReader(hdr1))
			if err != nil {
				t.Fatalf("with header 1 damaged: %v", err)
			}
			if info2.HeaderIndex != 1 {
				t.Errorf("with header 1 damaged: header %d chosen", info2.HeaderIndex)
			}
			hdr1[vhdxHeader2Offset+100] ^= 1
			_, err = ReadVHDXInfo(bytes.NewReader(hdr1))
			var fe *FormatError
			if !errors.Is(err, ErrChecksum) || !errors.As(err, &fe) || fe.Offset != vhdxHeader1Offset+4 {
				t.Errorf("with both headers damaged: %v", err)
			}

			// Damage region table 1: table 2 is used. Damage both: error at table 1.
			rt := bytes.Clone(b)
			rt[vhdxRegionTable1Offset+1000] ^= 1
			if _, err := ReadVHDXInfo(bytes.NewReader(rt)); err != nil {
				t.Errorf("with region table 1 damaged: %v", err)
			}
			rt[vhdxRegionTable2Offset+1000] ^= 1
			if _, err := ReadVHDXInfo(bytes.NewReader(rt)); !errors.Is(err, ErrChecksum) || !errors.As(err, &fe) || fe.Offset != vhdxRegionTable1Offset+4 {
				t.Errorf("with both region tables damaged: %v", err)
			}

			if _, err := ReadVHDXInfo(bytes.NewReader(b[:200<<10])); !errors.Is(err, ErrTruncated) {
				t.Errorf("truncated: %v", err)
			}
		})
	}
}

func TestVHDXHeaderSelection(t *testing.T) {
	base := func(seq1, seq2 uint64, same bool) []byte {
		f := make([]byte, 1<<20)
		copy(f, vhdxSignature)
		for i, seq := range []uint64{seq1, seq2} {
			h := &VHDXHeader{SequenceNumber: seq, Version: 1, LogOffset: 1 << 20, LogLength: 1 << 20}
			if !same {
				h.FileWriteGUID.Data1 = uint32(i + 1)
			}
			hb, _ := h.MarshalBinary()
			copy(f[[]int{vhdxHeader1Offset, vhdxHeader2Offset}[i]:], hb)
		}
		rt := &VHDXRegionTable{Entries: []VHDXRegion{
			{GUID: VHDXRegionBAT, FileOffset: 2 << 20, Length: 1 << 20, Required: true},
			{GUID: VHDXRegionMetadata, FileOffset: 3 << 20, Length: 1 << 20, Required: true},
		}}
		rb, _ := rt.MarshalBinary()
		copy(f[vhdxRegionTable1Offset:], rb)
		copy(f[vhdxRegionTable2Offset:], rb)
		return f
	}
	tests := []struct {
		name       string
		seq1, seq2 uint64
		same       bool
		want       int
		wantErr    bool
	}{
		{"first newer", 5, 4, false, 0, false},
		{"second newer", 4, 5, false, 1, false},
		{"equal and identical", 7, 7, true, 0, false},
		{"equal but different", 7, 7, false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ReadVHDXInfo(bytes.NewReader(base(tt.seq1, tt.seq2, tt.same)))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("err = %v, want ErrInvalidFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.HeaderIndex != tt.want {
				t.Errorf("header %d chosen, want %d", info.HeaderIndex, tt.want)
			}
		})
	}
}

func FuzzReadVHDXInfo(f *testing.F) {
	f1 := make([]byte, 320<<10)
	copy(f1, vhdxSignature)
	h := &VHDXHeader{SequenceNumber: 1, Version: 1, LogOffset: 1 << 20, LogLength: 1 << 20}
	hb, _ := h.MarshalBinary()
	copy(f1[vhdxHeader1Offset:], hb)
	rt := &VHDXRegionTable{Entries: []VHDXRegion{
		{GUID: VHDXRegionBAT, FileOffset: 2 << 20, Length: 1 << 20},
		{GUID: VHDXRegionMetadata, FileOffset: 3 << 20, Length: 1 << 20},
	}}
	rb, _ := rt.MarshalBinary()
	copy(f1[vhdxRegionTable1Offset:], rb)
	f.Add(f1)
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ReadVHDXInfo(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error %v does not match ErrInvalidFormat", err)
			}
			return
		}
		// The chosen header and region table re-encode to structures that parse
		// to the same values.
		hb, _ := info.Header.MarshalBinary()
		h2, err := ParseVHDXHeaderAt(hb, 0)
		if err != nil {
			t.Fatal(err)
		}
		h2.Checksum = info.Header.Checksum
		if *h2 != info.Header {
			t.Fatalf("header round trip: %+v != %+v", h2, info.Header)
		}
		rb, _ := info.Regions.MarshalBinary()
		if _, err := ParseVHDXRegionTableAt(rb, 0); err != nil {
			t.Fatalf("region table round trip: %v", err)
		}
	})
}
