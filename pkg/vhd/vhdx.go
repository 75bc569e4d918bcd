package vhd

// Reading the structures of a VHDX file that describe it ([MS-VHDX] §2.1–2.6):
// the file type identifier, the two headers, the region table and the metadata
// items. The BAT is read in vhdx_file.go, the log in vhdx_log.go.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// VHDX layout constants.
const (
	vhdxMiB                = 1 << 20
	VHDXHeaderSize         = 4096
	VHDXRegionTableSize    = 64 << 10
	vhdxHeader1Offset      = 64 << 10
	vhdxHeader2Offset      = 128 << 10
	vhdxRegionTable1Offset = 192 << 10
	vhdxRegionTable2Offset = 256 << 10
	vhdxMaxRegionEntries   = 2047
	vhdxSignature          = "vhdxfile"
	vhdxHeaderSignature    = "head"
	vhdxRegionSignature    = "regi"
)

// Region GUIDs of the VHDX region table.
var (
	VHDXRegionBAT      = guid.GUID{Data1: 0x2DC27766, Data2: 0xF623, Data3: 0x4200, Data4: [8]byte{0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08}}
	VHDXRegionMetadata = guid.GUID{Data1: 0x8B7CA206, Data2: 0x4790, Data3: 0x4B9A, Data4: [8]byte{0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E}}
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c computes the CRC-32C of b with the four bytes at off taken as zero.
func crc32c(b []byte, off int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, b[off+4:])
}

// VHDXHeader is one of the two 4 KiB VHDX headers.
type VHDXHeader struct {
	Checksum       uint32 // stored CRC-32C; MarshalBinary writes the correct one
	SequenceNumber uint64
	FileWriteGUID  guid.GUID
	DataWriteGUID  guid.GUID
	LogGUID        guid.GUID // zero when the log is empty
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

// MarshalBinary encodes the header into 4096 bytes with its CRC-32C.
func (h *VHDXHeader) MarshalBinary() ([]byte, error) {
	le := binary.LittleEndian
	b := make([]byte, VHDXHeaderSize)
	copy(b, vhdxHeaderSignature)
	le.PutUint64(b[8:], h.SequenceNumber)
	putWinGUID(b[16:], h.FileWriteGUID)
	putWinGUID(b[32:], h.DataWriteGUID)
	putWinGUID(b[48:], h.LogGUID)
	le.PutUint16(b[64:], h.LogVersion)
	le.PutUint16(b[66:], h.Version)
	le.PutUint32(b[68:], h.LogLength)
	le.PutUint64(b[72:], h.LogOffset)
	le.PutUint32(b[4:], crc32c(b, 4))
	return b, nil
}

func putWinGUID(b []byte, g guid.GUID) {
	a := g.ToWindowsArray()
	copy(b, a[:])
}

func winGUID(b []byte) guid.GUID {
	var a [16]byte
	copy(a[:], b)
	return guid.FromWindowsArray(a)
}

// ParseVHDXHeaderAt decodes and validates a VHDX header read at file offset base:
// signature, CRC-32C over the 4096 bytes, version 1, log version 0, and a log that
// is 1 MiB aligned at or after 1 MiB.
func ParseVHDXHeaderAt(b []byte, base int64) (*VHDXHeader, error) {
	const s = "VHDX header"
	if len(b) < VHDXHeaderSize {
		return nil, formatErr(s, base+int64(len(b)), fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), VHDXHeaderSize))
	}
	b = b[:VHDXHeaderSize]
	if string(b[:4]) != vhdxHeaderSignature {
		return nil, formatErrf(s, base, "signature %q, want %q", b[:4], vhdxHeaderSignature)
	}
	le := binary.LittleEndian
	h := &VHDXHeader{
		Checksum:       le.Uint32(b[4:]),
		SequenceNumber: le.Uint64(b[8:]),
		FileWriteGUID:  winGUID(b[16:]),
		DataWriteGUID:  winGUID(b[32:]),
		LogGUID:        winGUID(b[48:]),
		LogVersion:     le.Uint16(b[64:]),
		Version:        le.Uint16(b[66:]),
		LogLength:      le.Uint32(b[68:]),
		LogOffset:      le.Uint64(b[72:]),
	}
	if want := crc32c(b, 4); want != h.Checksum {
		return nil, formatErr(s, base+4, fmt.Errorf("%w: stored 0x%08X, computed 0x%08X", ErrChecksum, h.Checksum, want))
	}
	if h.Version != 1 {
		return nil, formatErr(s, base+66, fmt.Errorf("%w: version %d", ErrUnsupported, h.Version))
	}
	if h.LogVersion != 0 {
		return nil, formatErr(s, base+64, fmt.Errorf("%w: log version %d", ErrUnsupported, h.LogVersion))
	}
	if h.LogLength%vhdxMiB != 0 {
		return nil, formatErrf(s, base+68, "log length %d is not a multiple of 1 MiB", h.LogLength)
	}
	if h.LogOffset%vhdxMiB != 0 || h.LogOffset < vhdxMiB {
		return nil, formatErrf(s, base+72, "log offset %d is not a multiple of 1 MiB at or after 1 MiB", h.LogOffset)
	}
	return h, nil
}

// VHDXRegion is an entry of the VHDX region table.
type VHDXRegion struct {
	GUID       guid.GUID
	FileOffset uint64
	Length     uint32
	Required   bool
}

// VHDXRegionTable is the 64 KiB VHDX region table.
type VHDXRegionTable struct {
	Checksum uint32 // stored CRC-32C; MarshalBinary writes the correct one
	Entries  []VHDXRegion
}

// MarshalBinary encodes the region table into 65536 bytes with its CRC-32C.
func (t *VHDXRegionTable) MarshalBinary() ([]byte, error) {
	if len(t.Entries) > vhdxMaxRegionEntries {
		return nil, fmt.Errorf("vhd: %d VHDX regions, at most %d", len(t.Entries), vhdxMaxRegionEntries)
	}
	le := binary.LittleEndian
	b := make([]byte, VHDXRegionTableSize)
	copy(b, vhdxRegionSignature)
	le.PutUint32(b[8:], uint32(len(t.Entries)))
	for i, e := range t.Entries {
		p := b[16+32*i:]
		putWinGUID(p, e.GUID)
		le.PutUint64(p[16:], e.FileOffset)
		le.PutUint32(p[24:], e.Length)
		if e.Required {
			le.PutUint32(p[28:], 1)
		}
	}
	le.PutUint32(b[4:], crc32c(b, 4))
	return b, nil
}

// ParseVHDXRegionTableAt decodes and validates a region table read at file offset
// base: signature, CRC-32C over 65536 bytes, entry count, 1 MiB alignment, no
// overlaps, each known region once and both present, no unknown required region.
func ParseVHDXRegionTableAt(b []byte, base int64) (*VHDXRegionTable, error) {
	const s = "VHDX region table"
	if len(b) < VHDXRegionTableSize {
		return nil, formatErr(s, base+int64(len(b)), fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), VHDXRegionTableSize))
	}
	b = b[:VHDXRegionTableSize]
	if string(b[:4]) != vhdxRegionSignature {
		return nil, formatErrf(s, base, "signature %q, want %q", b[:4], vhdxRegionSignature)
	}
	le := binary.LittleEndian
	t := &VHDXRegionTable{Checksum: le.Uint32(b[4:])}
	if want := crc32c(b, 4); want != t.Checksum {
		return nil, formatErr(s, base+4, fmt.Errorf("%w: stored 0x%08X, computed 0x%08X", ErrChecksum, t.Checksum, want))
	}
	n := le.Uint32(b[8:])
	if n > vhdxMaxRegionEntries {
		return nil, formatErrf(s, base+8, "%d entries, at most %d", n, vhdxMaxRegionEntries)
	}
	seen := map[guid.GUID]bool{}
	for i := range int(n) {
		p := b[16+32*i:]
		off := base + 16 + 32*int64(i)
		flags := le.Uint32(p[28:])
		e := VHDXRegion{GUID: winGUID(p), FileOffset: le.Uint64(p[16:]), Length: le.Uint32(p[24:]), Required: flags&1 != 0}
		if flags&^1 != 0 {
			return nil, formatErrf(s, off+28, "reserved flag bits 0x%X set", flags&^1)
		}
		if e.FileOffset%vhdxMiB != 0 || e.FileOffset < vhdxMiB || e.FileOffset > 1<<60 || e.Length%vhdxMiB != 0 {
			return nil, formatErrf(s, off+16, "region %v at %d length %d not 1 MiB aligned after the header section", e.GUID, e.FileOffset, e.Length)
		}
		known := e.GUID == VHDXRegionBAT || e.GUID == VHDXRegionMetadata
		if !known && e.Required {
			return nil, formatErr(s, off, fmt.Errorf("%w: unknown required region %v", ErrUnsupported, e.GUID))
		}
		if seen[e.GUID] {
			return nil, formatErrf(s, off, "region %v listed twice", e.GUID)
		}
		seen[e.GUID] = true
		t.Entries = append(t.Entries, e)
	}
	for _, g := range []guid.GUID{VHDXRegionBAT, VHDXRegionMetadata} {
		if !seen[g] {
			return nil, formatErrf(s, base+8, "no region %v", g)
		}
	}
	sorted := append([]VHDXRegion(nil), t.Entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].FileOffset < sorted[j].FileOffset })
	for i := 1; i < len(sorted); i++ {
		if prev := sorted[i-1]; prev.FileOffset+uint64(prev.Length) > sorted[i].FileOffset {
			return nil, formatErrf(s, base+16, "regions %v and %v overlap", prev.GUID, sorted[i].GUID)
		}
	}
	return t, nil
}

// Region returns the entry for region g, if present.
func (t *VHDXRegionTable) Region(g guid.GUID) (VHDXRegion, bool) {
	for _, e := range t.Entries {
		if e.GUID == g {
			return e, true
		}
	}
	return VHDXRegion{}, false
}

// VHDXInfo is what [ReadVHDXInfo] finds in the first megabyte of a VHDX file.
type VHDXInfo struct {
	// Creator is the diagnostic creator string of the file type identifier.
	Creator string
	// Header is the current header; HeaderIndex is its slot, 0 or 1.
	Header      VHDXHeader
	HeaderIndex int
	// Regions is the region table in use (the first copy, or the second when the
	// first is damaged).
	Regions VHDXRegionTable
	// Metadata lists the entries of the metadata table, including unknown ones.
	Metadata []VHDXMetadataEntry

	// Values of the system metadata items.
	BlockSize           uint32
	LeaveBlockAllocated bool // set on fixed disks
	HasParent           bool // set on differencing disks
	VirtualDiskSize     uint64
	VirtualDiskID       guid.GUID
	LogicalSectorSize   uint32
	PhysicalSectorSize  uint32
	// ParentLocator is the parent locator item of a differencing disk.
	ParentLocator *VHDXParentLocator
	// VirtualDiskSizeOffset is the file offset of the virtual disk size item.
	VirtualDiskSizeOffset int64
}

// ReadVHDXInfo reads the file type identifier, chooses the current header (the
// valid one, or of two valid ones the one with the larger sequence number; equal
// numbers need identical headers) and reads the region table. Errors are
// *FormatError naming the structure and file offset.
//
// A file whose log is not empty (Header.LogGUID not zero) may have region table,
// metadata and BAT updates in its log that are not yet in place: the result then
// describes the file as it is before replay.
func ReadVHDXInfo(r io.ReaderAt) (*VHDXInfo, error) {
	info, err := readVHDXHeaders(r)
	if err != nil {
		return nil, err
	}
	if err := readVHDXRegions(r, info); err != nil {
		return nil, err
	}
	return info, nil
}

// readVHDXHeaders reads the file type identifier and chooses the current header.
func readVHDXHeaders(r io.ReaderAt) (*VHDXInfo, error) {
	buf := make([]byte, 520)
	read := func(structure string, off int64, b []byte) error {
		if _, err := r.ReadAt(b, off); err != nil {
			return formatErr(structure, off, ioErr(err))
		}
		return nil
	}
	if err := read("VHDX file identifier", 0, buf[:520]); err != nil {
		return nil, err
	}
	if string(buf[:8]) != vhdxSignature {
		return nil, formatErrf("VHDX file identifier", 0, "signature %q, want %q", buf[:8], vhdxSignature)
	}
	info := &VHDXInfo{Creator: decodeUTF16LE(buf[8:520])}

	var hs [2]*VHDXHeader
	var raws [2][]byte
	var errs [2]error
	for i, off := range []int64{vhdxHeader1Offset, vhdxHeader2Offset} {
		b := make([]byte, VHDXHeaderSize)
		if errs[i] = read("VHDX header", off, b); errs[i] == nil {
			hs[i], errs[i] = ParseVHDXHeaderAt(b, off)
			raws[i] = b
		}
	}
	switch {
	case hs[0] == nil && hs[1] == nil:
		return nil, fmt.Errorf("no valid VHDX header: %w; %w", errs[0], errs[1])
	case hs[1] == nil || (hs[0] != nil && hs[0].SequenceNumber > hs[1].SequenceNumber):
		info.Header, info.HeaderIndex = *hs[0], 0
	case hs[0] == nil || hs[1].SequenceNumber > hs[0].SequenceNumber:
		info.Header, info.HeaderIndex = *hs[1], 1
	default:
		if !bytes.Equal(raws[0][:80], raws[1][:80]) {
			return nil, formatErrf("VHDX header", vhdxHeader2Offset+8, "both headers have sequence number %d but differ", hs[0].SequenceNumber)
		}
		info.Header, info.HeaderIndex = *hs[0], 0
	}
	return info, nil
}

// readVHDXRegions reads the region table and the metadata into info.
func readVHDXRegions(r io.ReaderAt, info *VHDXInfo) error {
	buf := make([]byte, VHDXRegionTableSize)
	read := func(structure string, off int64, b []byte) error {
		if _, err := r.ReadAt(b, off); err != nil {
			return formatErr(structure, off, ioErr(err))
		}
		return nil
	}
	var firstErr error
	for _, off := range []int64{vhdxRegionTable1Offset, vhdxRegionTable2Offset} {
		if err := read("VHDX region table", off, buf); err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		t, err := ParseVHDXRegionTableAt(buf, off)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		info.Regions = *t
		info.Metadata = nil
		return readVHDXMetadata(r, info)
	}
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Metadata item GUIDs.
var (
	VHDXItemFileParameters     = guid.GUID{Data1: 0xCAA16737, Data2: 0xFA36, Data3: 0x4D43, Data4: [8]byte{0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B}}
	VHDXItemVirtualDiskSize    = guid.GUID{Data1: 0x2FA54224, Data2: 0xCD1B, Data3: 0x4876, Data4: [8]byte{0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8}}
	VHDXItemVirtualDiskID      = guid.GUID{Data1: 0xBECA12AB, Data2: 0xB2E6, Data3: 0x4523, Data4: [8]byte{0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46}}
	VHDXItemLogicalSectorSize  = guid.GUID{Data1: 0x8141BF1D, Data2: 0xA96F, Data3: 0x4709, Data4: [8]byte{0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F}}
	VHDXItemPhysicalSectorSize = guid.GUID{Data1: 0xCDA348C7, Data2: 0x445D, Data3: 0x4471, Data4: [8]byte{0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56}}
	VHDXItemParentLocator      = guid.GUID{Data1: 0xA8D35F2D, Data2: 0xB30B, Data3: 0x454D, Data4: [8]byte{0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C}}
)

// VHDXMetadataEntry is an entry of the metadata table. Offset is relative to the
// start of the metadata region.
type VHDXMetadataEntry struct {
	ItemID        guid.GUID
	Offset        uint32
	Length        uint32
	IsUser        bool
	IsVirtualDisk bool
	IsRequired    bool
}

const (
	vhdxMetadataSignature  = "metadata"
	vhdxMetadataTableSize  = 64 << 10
	vhdxMaxMetadataEntries = 2047
	vhdxMaxVirtualSize     = 64 << 40
)

// readVHDXMetadata reads the metadata table and the system items into info.
func readVHDXMetadata(r io.ReaderAt, info *VHDXInfo) error {
	const s = "VHDX metadata table"
	region, _ := info.Regions.Region(VHDXRegionMetadata)
	base := int64(region.FileOffset)
	if region.Length < vhdxMetadataTableSize {
		return formatErrf(s, base, "metadata region of %d bytes", region.Length)
	}
	b := make([]byte, vhdxMetadataTableSize)
	if _, err := r.ReadAt(b, base); err != nil {
		return formatErr(s, base, ioErr(err))
	}
	if string(b[:8]) != vhdxMetadataSignature {
		return formatErrf(s, base, "signature %q, want %q", b[:8], vhdxMetadataSignature)
	}
	le := binary.LittleEndian
	n := int(le.Uint16(b[10:]))
	if n > vhdxMaxMetadataEntries {
		return formatErrf(s, base+10, "%d entries, at most %d", n, vhdxMaxMetadataEntries)
	}
	type key struct {
		id   guid.GUID
		user bool
	}
	seen := map[key]bool{}
	items := map[guid.GUID][]byte{}
	for i := range n {
		p := b[32+32*i:]
		off := base + 32 + 32*int64(i)
		flags := le.Uint32(p[24:])
		e := VHDXMetadataEntry{
			ItemID: winGUID(p), Offset: le.Uint32(p[16:]), Length: le.Uint32(p[20:]),
			IsUser: flags&1 != 0, IsVirtualDisk: flags&2 != 0, IsRequired: flags&4 != 0,
		}
		if flags&^7 != 0 {
			return formatErrf(s, off+24, "item %v: reserved flag bits 0x%X set", e.ItemID, flags&^7)
		}
		if e.Length > vhdxMiB || (e.Length == 0 && e.Offset != 0) || (e.Length != 0 && (e.Offset < vhdxMetadataTableSize || uint64(e.Offset)+uint64(e.Length) > uint64(region.Length))) {
			return formatErrf(s, off+16, "item %v: %d bytes at %d outside the metadata region", e.ItemID, e.Length, e.Offset)
		}
		k := key{e.ItemID, e.IsUser}
		if seen[k] {
			return formatErrf(s, off, "item %v listed twice", e.ItemID)
		}
		seen[k] = true
		info.Metadata = append(info.Metadata, e)
		if e.IsUser {
			continue
		}
		switch e.ItemID {
		case VHDXItemFileParameters, VHDXItemVirtualDiskSize, VHDXItemVirtualDiskID,
			VHDXItemLogicalSectorSize, VHDXItemPhysicalSectorSize, VHDXItemParentLocator:
			want := map[guid.GUID]uint32{VHDXItemFileParameters: 8, VHDXItemVirtualDiskSize: 8, VHDXItemVirtualDiskID: 16,
				VHDXItemLogicalSectorSize: 4, VHDXItemPhysicalSectorSize: 4}[e.ItemID]
			if want != 0 && e.Length != want {
				return formatErrf(s, off+20, "item %v: length %d, want %d", e.ItemID, e.Length, want)
			}
			data := make([]byte, e.Length)
			if _, err := r.ReadAt(data, base+int64(e.Offset)); err != nil {
				return formatErr("VHDX metadata item", base+int64(e.Offset), ioErr(err))
			}
			items[e.ItemID] = data
		default:
			if e.IsRequired {
				return formatErr(s, off, fmt.Errorf("%w: unknown required metadata item %v", ErrUnsupported, e.ItemID))
			}
		}
	}
	for _, id := range []guid.GUID{VHDXItemFileParameters, VHDXItemVirtualDiskSize, VHDXItemVirtualDiskID, VHDXItemLogicalSectorSize, VHDXItemPhysicalSectorSize} {
		if items[id] == nil {
			return formatErrf(s, base, "required item %v missing", id)
		}
	}
	itemErr := func(id guid.GUID, format string, args ...any) error {
		for _, e := range info.Metadata {
			if e.ItemID == id && !e.IsUser {
				return formatErrf("VHDX metadata item", base+int64(e.Offset), format, args...)
			}
		}
		return formatErrf("VHDX metadata item", base, format, args...)
	}
	fp := items[VHDXItemFileParameters]
	info.BlockSize = le.Uint32(fp)
	fpFlags := le.Uint32(fp[4:])
	info.LeaveBlockAllocated, info.HasParent = fpFlags&1 != 0, fpFlags&2 != 0
	if bs := info.BlockSize; bs < vhdxMiB || bs > 256*vhdxMiB || bs&(bs-1) != 0 {
		return itemErr(VHDXItemFileParameters, "block size %d is not a power of two from 1 MiB to 256 MiB", bs)
	}
	if fpFlags&^3 != 0 {
		return itemErr(VHDXItemFileParameters, "reserved file parameter bits 0x%X set", fpFlags&^3)
	}
	if info.HasParent && items[VHDXItemParentLocator] == nil {
		return itemErr(VHDXItemFileParameters, "HasParent set without a parent locator item")
	}
	info.LogicalSectorSize = le.Uint32(items[VHDXItemLogicalSectorSize])
	info.PhysicalSectorSize = le.Uint32(items[VHDXItemPhysicalSectorSize])
	for id, v := range map[guid.GUID]uint32{VHDXItemLogicalSectorSize: info.LogicalSectorSize, VHDXItemPhysicalSectorSize: info.PhysicalSectorSize} {
		if v != 512 && v != 4096 {
			return itemErr(id, "sector size %d, want 512 or 4096", v)
		}
	}
	info.VirtualDiskSize = le.Uint64(items[VHDXItemVirtualDiskSize])
	if info.VirtualDiskSize == 0 || info.VirtualDiskSize > vhdxMaxVirtualSize || info.VirtualDiskSize%uint64(info.LogicalSectorSize) != 0 {
		return itemErr(VHDXItemVirtualDiskSize, "virtual disk size %d is not a multiple of %d up to 64 TiB", info.VirtualDiskSize, info.LogicalSectorSize)
	}
	info.VirtualDiskID = winGUID(items[VHDXItemVirtualDiskID])
	for _, e := range info.Metadata {
		if e.IsUser {
			continue
		}
		switch e.ItemID {
		case VHDXItemVirtualDiskSize:
			info.VirtualDiskSizeOffset = base + int64(e.Offset)
		case VHDXItemParentLocator:
			if !info.HasParent {
				continue
			}
			l, err := ParseVHDXParentLocatorAt(items[VHDXItemParentLocator], base+int64(e.Offset))
			if err != nil {
				return err
			}
			info.ParentLocator = l
		}
	}
	return nil
}
