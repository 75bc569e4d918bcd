package vhd

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
			path, b := qemuVHDX(t, opts)
			qi := qemuInfo(t, path)
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

			if info.VirtualDiskSize != 64<<20 || info.LogicalSectorSize != 512 || info.BlockSize == 0 || info.HasParent {
				t.Errorf("metadata: size %d, LSS %d, block size %d, has parent %v", info.VirtualDiskSize, info.LogicalSectorSize, info.BlockSize, info.HasParent)
			}
			if int64(info.BlockSize) != qi.ClusterSize || int64(info.VirtualDiskSize) != qi.VirtualSize || qi.Format != "vhdx" {
				t.Errorf("block size %d and size %d, qemu-img info says %+v", info.BlockSize, info.VirtualDiskSize, qi)
			}
			if fixed := opts != "subformat=dynamic"; info.LeaveBlockAllocated != fixed {
				t.Errorf("LeaveBlockAllocated = %v for %s", info.LeaveBlockAllocated, opts)
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

// vhdxItem is a metadata item for buildVHDX.
type vhdxItem struct {
	id    guid.GUID
	flags uint32
	data  []byte
}

// standardItems returns the five mandatory metadata items of a dynamic disk.
func standardItems(size uint64, blockSize uint32) []vhdxItem {
	le := func(n int, v uint64) []byte {
		b := make([]byte, n)
		for i := range n {
			b[i] = byte(v >> (8 * i))
		}
		return b
	}
	return []vhdxItem{
		{VHDXItemFileParameters, 4, append(le(4, uint64(blockSize)), le(4, 0)...)},
		{VHDXItemVirtualDiskSize, 6, le(8, size)},
		{VHDXItemVirtualDiskID, 6, bytes.Repeat([]byte{0x42}, 16)},
		{VHDXItemLogicalSectorSize, 6, le(4, 512)},
		{VHDXItemPhysicalSectorSize, 6, le(4, 4096)},
	}
}

// buildVHDX builds the first 1 MiB + metadata of a VHDX file: identifier, two
// headers with the given sequence numbers, two region tables (metadata at 1 MiB,
// BAT at 2 MiB) and a metadata table with items.
func buildVHDX(seq1, seq2 uint64, same bool, items []vhdxItem) []byte {
	const mdOff = 1 << 20
	f := make([]byte, mdOff+64<<10+64*len(items))
	copy(f, vhdxSignature)
	copy(f[8:], encodeUTF16LE("hostcompute test"))
	for i, seq := range []uint64{seq1, seq2} {
		h := &VHDXHeader{SequenceNumber: seq, Version: 1, LogOffset: 8 << 20, LogLength: 1 << 20}
		if !same {
			h.FileWriteGUID.Data1 = uint32(i + 1)
		}
		hb, _ := h.MarshalBinary()
		copy(f[[]int{vhdxHeader1Offset, vhdxHeader2Offset}[i]:], hb)
	}
	rt := &VHDXRegionTable{Entries: []VHDXRegion{
		{GUID: VHDXRegionBAT, FileOffset: 2 << 20, Length: 1 << 20, Required: true},
		{GUID: VHDXRegionMetadata, FileOffset: mdOff, Length: 1 << 20, Required: true},
	}}
	rb, _ := rt.MarshalBinary()
	copy(f[vhdxRegionTable1Offset:], rb)
	copy(f[vhdxRegionTable2Offset:], rb)
	md := f[mdOff:]
	copy(md, vhdxMetadataSignature)
	md[10] = byte(len(items))
	dataOff := uint32(64 << 10)
	for i, it := range items {
		e := md[32+32*i:]
		a := it.id.ToWindowsArray()
		copy(e, a[:])
		for j, v := range []uint32{dataOff, uint32(len(it.data)), it.flags} {
			e[16+4*j], e[17+4*j], e[18+4*j], e[19+4*j] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		copy(md[dataOff:], it.data)
		dataOff += 64
	}
	return f
}

func TestVHDXHeaderSelection(t *testing.T) {
	base := func(seq1, seq2 uint64, same bool) []byte {
		return buildVHDX(seq1, seq2, same, standardItems(1<<30, 1<<20))
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
	f.Add(buildVHDX(1, 2, false, standardItems(1<<30, 1<<20)))
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

func TestVHDXMetadata(t *testing.T) {
	var unknown guid.GUID
	unknown.Data1 = 0x12345678
	tests := []struct {
		name  string
		items []vhdxItem
		is    error
	}{
		{"standard", standardItems(1<<30, 1<<20), nil},
		{"unknown optional item", append(standardItems(1<<30, 1<<20), vhdxItem{unknown, 0, []byte{1}}), nil},
		{"user item with a system GUID", append(standardItems(1<<30, 1<<20), vhdxItem{VHDXItemVirtualDiskSize, 1, []byte{1}}), nil},
		{"unknown required item", append(standardItems(1<<30, 1<<20), vhdxItem{unknown, 4, []byte{1}}), ErrUnsupported},
		{"missing item", standardItems(1<<30, 1<<20)[1:], ErrInvalidFormat},
		{"bad block size", standardItems(1<<30, 3<<20), ErrInvalidFormat},
		{"unaligned size", standardItems(1<<30+1, 1<<20), ErrInvalidFormat},
		{"duplicate item", append(standardItems(1<<30, 1<<20), standardItems(1<<30, 1<<20)[0]), ErrInvalidFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ReadVHDXInfo(bytes.NewReader(buildVHDX(1, 2, false, tt.items)))
			if tt.is != nil {
				if !errors.Is(err, tt.is) || !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("err = %v, want %v", err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.VirtualDiskSize != 1<<30 || info.BlockSize != 1<<20 || info.LogicalSectorSize != 512 || info.PhysicalSectorSize != 4096 || info.HasParent || info.LeaveBlockAllocated {
				t.Errorf("info %+v", info)
			}
			if info.Creator != "hostcompute test" || info.HeaderIndex != 1 {
				t.Errorf("creator %q header %d", info.Creator, info.HeaderIndex)
			}
		})
	}
}

// TestOpenVHDXQemu reads VHDX files written by qemu and compares with qemu-img
// convert.
func TestOpenVHDXQemu(t *testing.T) {
	requireQemu(t)
	for _, opts := range []string{
		"subformat=dynamic",
		"subformat=dynamic,block_size=1M,block_state_zero=off",
		"subformat=fixed,block_size=1M",
		"subformat=dynamic,block_size=32M",
		"subformat=dynamic,block_size=256M",
		"subformat=fixed,block_size=8M",
		"subformat=dynamic,block_size=2M,log_size=2M",
	} {
		t.Run(opts, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "q.vhdx")
			run(t, "qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, p, "100M")
			run(t, "qemu-io", "-f", "vhdx",
				"-c", "write -P 0xab 1M 64k",
				"-c", "write -P 0x12 0 512",
				"-c", "write -P 0xcd 33M 3M",
				"-c", "write -P 0xef 99M 1M",
				p)
			out := filepath.Join(t.TempDir(), "out.raw")
			run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", p, out)
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			sum := fileSHA(t, p)
			d, err := Open(p, true)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got := make([]byte, d.Size())
			if n, err := d.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt: %d, %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("contents differ from qemu-img convert at %d (len %d, want %d)", firstDiff(got, want), len(got), len(want))
			}
			if fileSHA(t, p) != sum {
				t.Fatal("OpenVHDX modified the file")
			}
		})
	}
}

// FuzzVHDXReader opens a VHDX built from a valid template with fuzzed bytes laid
// over the metadata table, the metadata items and the BAT (the header section has
// FuzzReadVHDXInfo), then reads the first and last sector of up to 4096 blocks.
// No panics, and errors of this package's classes only.
func FuzzVHDXReader(f *testing.F) {
	img := buildVHDX(1, 2, false, standardItems(64<<20, 1<<20))
	template := make([]byte, 6<<20)
	copy(template, img)
	for i := 3 << 20; i < 6<<20; i += 4096 {
		template[i] = byte(i >> 12)
	}
	const mdOff, batOff = 1 << 20, 2 << 20
	mdTable := bytes.Clone(img[mdOff : mdOff+32+32*5])
	mdItems := bytes.Clone(img[mdOff+64<<10:])
	// 64 payload entries: three present blocks after the BAT, one zero block.
	bat := make([]byte, 64*8)
	for i, off := range map[int]int{0: 3, 5: 4, 63: 5} {
		v := uint64(off)<<20 | VHDXBlockFullyPresent
		for j := range 8 {
			bat[8*i+j] = byte(v >> (8 * j))
		}
	}
	bat[8*7] = VHDXBlockZero
	f.Add(mdTable, mdItems, bat)
	f.Fuzz(func(t *testing.T, table, items, bat []byte) {
		b := bytes.Clone(template)
		copy(b[mdOff:mdOff+64<<10], table)
		copy(b[mdOff+64<<10:batOff], items)
		copy(b[batOff:3<<20], bat)
		d, err := openVHDXBytes(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is of no class of this package", err)
			}
			return
		}
		defer d.Close()
		buf := make([]byte, 512)
		bs := int64(d.VHDXInfo().BlockSize)
		for i, off := 0, int64(0); i < 4096 && off < d.Size(); i, off = i+1, off+bs {
			for _, o := range []int64{off, min(off+bs, d.Size()) - 512} {
				if _, err := d.ReadAt(buf, o); err != nil && err != io.EOF && !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("ReadAt(%d): %v", o, err)
				}
			}
		}
	})
}

func TestVHDXReaderTemplate(t *testing.T) {
	img := buildVHDX(1, 2, false, standardItems(64<<20, 1<<20))
	b := make([]byte, 6<<20)
	copy(b, img)
	v := uint64(3)<<20 | VHDXBlockFullyPresent
	for j := range 8 {
		b[2<<20+8*5+j] = byte(v >> (8 * j))
	}
	b[3<<20+7] = 0x77
	d, err := openVHDXBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16)
	if _, err := d.ReadAt(got, 5<<20); err != nil || got[7] != 0x77 || got[6] != 0 {
		t.Fatalf("block 5: % x, %v", got, err)
	}
	if _, err := d.ReadAt(got, 6<<20); err != nil || !bytes.Equal(got, make([]byte, 16)) {
		t.Fatalf("block 6: % x, %v", got, err)
	}
	// Reserved BAT bits are refused with the entry's offset.
	b[2<<20+8*9+1] = 0x10
	_, err = openVHDXBytes(b)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Structure != "VHDX BAT" || fe.Offset != 2<<20+8*9 {
		t.Fatalf("reserved bits: %v", err)
	}
}

func TestCreateVHDXOracles(t *testing.T) {
	requireQemu(t)
	tests := []struct {
		name string
		opts VHDXCreateOptions
	}{
		{"20GiB 1MiB blocks (hcsshim scratch)", VHDXCreateOptions{Size: 20 << 30, BlockSize: 1 << 20}},
		{"100MiB default blocks", VHDXCreateOptions{Size: 100 << 20}},
		{"odd size 512-byte sectors", VHDXCreateOptions{Size: 3<<20 + 4096*3, BlockSize: 2 << 20, PhysicalSectorSize: 512}},
		// 7-Zip 26.02 refuses virtual sizes that are not a multiple of 4096
		// (observed); qemu reads them.
		{"size not a multiple of 4096", VHDXCreateOptions{Size: 3<<20 + 512*3, BlockSize: 2 << 20}},
		{"4K logical sectors", VHDXCreateOptions{Size: 64 << 20, LogicalSectorSize: 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "new.vhdx")
			if err := CreateVHDX(p, tt.opts); err != nil {
				t.Fatal(err)
			}
			d, err := Open(p, true)
			if err != nil {
				t.Fatal(err)
			}
			info := d.VHDXInfo()
			d.Close()
			if int64(info.VirtualDiskSize) != tt.opts.Size {
				t.Errorf("size %d, want %d", info.VirtualDiskSize, tt.opts.Size)
			}
			if _, err := exec.LookPath("7zz"); err == nil && tt.opts.Size%4096 == 0 {
				out := string(run(t, "7zz", "l", p))
				if strings.Contains(out, "ERROR") {
					t.Errorf("7zz l reports an error:\n%s", out)
				}
			}
			if tt.opts.LogicalSectorSize == 4096 {
				return // qemu 7.2 cannot open 4K logical sector VHDX
			}
			out := string(run(t, "qemu-img", "check", p))
			if !strings.Contains(out, "No errors were found") {
				t.Errorf("qemu-img check:\n%s", out)
			}
			qi := qemuInfo(t, p)
			if qi.Format != "vhdx" || qi.VirtualSize != tt.opts.Size || qi.ClusterSize != int64(info.BlockSize) {
				t.Errorf("qemu-img info %+v", qi)
			}
			if tt.opts.Size > 1<<30 {
				return
			}
			// qemu writes into it, and this package reads what qemu reads.
			run(t, "qemu-io", "-f", "vhdx", "-c", "write -P 0xab 1M 64k", "-c", "write -P 0x5a 0 4096", p)
			run(t, "qemu-img", "check", p)
			raw := filepath.Join(t.TempDir(), "out.raw")
			run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", p, raw)
			want, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			if d, err = Open(p, true); err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got := make([]byte, d.Size())
			if _, err := d.ReadAt(got, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("differs from qemu-img convert at %d", firstDiff(got, want))
			}
		})
	}
}

func TestCreateVHDXDeterministic(t *testing.T) {
	dir := t.TempDir()
	opts := VHDXCreateOptions{Size: 1 << 30, BlockSize: 1 << 20}
	opts.FileWriteGUID.Data1, opts.DataWriteGUID.Data1, opts.VirtualDiskID.Data1 = 1, 2, 3
	var sums [][32]byte
	for _, name := range []string{"a.vhdx", "b.vhdx"} {
		p := filepath.Join(dir, name)
		if err := CreateVHDX(p, opts); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, fileSHA(t, p))
	}
	if sums[0] != sums[1] {
		t.Error("same options gave different files")
	}
	if err := CreateVHDX(filepath.Join(dir, "a.vhdx"), opts); !errors.Is(err, os.ErrExist) {
		t.Errorf("CreateVHDX over an existing file: %v", err)
	}
	for _, bad := range []VHDXCreateOptions{{Size: 1000}, {Size: 1 << 20, BlockSize: 3 << 20}, {Size: 1 << 20, LogicalSectorSize: 1024}, {Size: 65<<40 + 0}} {
		if err := CreateVHDX(filepath.Join(dir, "bad.vhdx"), bad); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("CreateVHDX(%+v): %v, want ErrInvalidOptions", bad, err)
		}
	}
}

// TestVHDXWriteQemu writes random data into VHDX files made here and by qemu, then
// has qemu-img check them and compares qemu-img convert with the model.
func TestVHDXWriteQemu(t *testing.T) {
	requireQemu(t)
	const size = 40 << 20
	tests := []struct {
		name   string
		create func(t *testing.T, p string)
	}{
		{"CreateVHDX 1MiB blocks", func(t *testing.T, p string) {
			if err := CreateVHDX(p, VHDXCreateOptions{Size: size, BlockSize: 1 << 20}); err != nil {
				t.Fatal(err)
			}
		}},
		{"CreateVHDX 32MiB blocks", func(t *testing.T, p string) {
			if err := CreateVHDX(p, VHDXCreateOptions{Size: size}); err != nil {
				t.Fatal(err)
			}
		}},
		{"qemu dynamic", func(t *testing.T, p string) {
			run(t, "qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", p, strconv.Itoa(size))
			run(t, "qemu-io", "-f", "vhdx", "-c", "write -P 0xab 1M 64k", p)
		}},
		{"qemu fixed", func(t *testing.T, p string) {
			run(t, "qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=fixed,block_size=1M", p, strconv.Itoa(size))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRand(t)
			p := filepath.Join(t.TempDir(), "w.vhdx")
			tt.create(t, p)
			d, err := Open(p, false)
			if err != nil {
				t.Fatal(err)
			}
			before := d.VHDXInfo().Header
			model := make([]byte, d.Size())
			if _, err := d.ReadAt(model, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			for range 30 {
				n := r.Int64N(3<<20) + 1
				off := r.Int64N(int64(len(model)) - n + 1)
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				if _, err := d.WriteAt(b, off); err != nil {
					t.Fatal(err)
				}
				copy(model[off:], b)
			}
			if _, err := d.WriteAt([]byte{1}, d.Size()); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("write past the end: %v", err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			out := string(run(t, "qemu-img", "check", p))
			if !strings.Contains(out, "No errors were found") {
				t.Fatalf("qemu-img check:\n%s", out)
			}
			raw := filepath.Join(t.TempDir(), "out.raw")
			run(t, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", p, raw)
			got, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Fatalf("qemu-img convert differs from the model at %d", firstDiff(got, model))
			}
			if _, err := exec.LookPath("7zz"); err == nil {
				if got := sevenZipVHDX(t, p); !bytes.Equal(got, model) {
					t.Fatalf("7-Zip read differs from the model at %d", firstDiff(got, model))
				}
			}
			// Both headers were rewritten with new GUIDs and higher sequence numbers.
			d, err = Open(p, true)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			after := d.VHDXInfo().Header
			if after.SequenceNumber != before.SequenceNumber+2 || after.DataWriteGUID == before.DataWriteGUID || after.FileWriteGUID == before.FileWriteGUID {
				t.Errorf("header before %+v, after %+v", before, after)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range []int64{vhdxHeader1Offset, vhdxHeader2Offset} {
				if _, err := ParseVHDXHeaderAt(b[off:], off); err != nil {
					t.Errorf("header at %d: %v", off, err)
				}
			}
		})
	}
}

func sevenZipVHDX(t *testing.T, path string) []byte {
	t.Helper()
	out, err := exec.Command("7zz", "e", "-tVHDX", "-so", path).Output()
	if err != nil {
		t.Fatalf("7zz e -tVHDX: %v", err)
	}
	return out
}

// openVHDXBytes opens an in-memory VHDX read-only.
func openVHDXBytes(b []byte) (*Disk, error) {
	return newVHDX(bytes.NewReader(b), nil, int64(len(b)), "memory.vhdx", 0, nil)
}
