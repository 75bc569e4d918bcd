package cimfs

import (
	"encoding/binary"
	"fmt"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// On-disk constants. Sizes are in bytes; see doc.go for the layout they describe.
const (
	magic = "cimfile0"

	commonHeaderSize   = 32
	fsHeaderSize       = 72
	regionSetSize      = 24
	regionHeaderSize   = 40
	objectIDHeaderSize = 48
	objectIDEntrySize  = 40
	filesystemSize     = 24
	ftdEntrySize       = 16
	streamSize         = 16
	linkHeaderSize     = 8
	peHeaderSize       = 24

	// recordSizeV1 and recordSizeV2 are the public record sizes; recordSize is what
	// this package writes: the v2 record plus the hostcompute extension (see
	// doc.go, "Extensions").
	recordSizeV1 = 88
	recordSizeV2 = 96
	recordSize   = 104

	filesPerTable = 1024
	upcaseEntries = 0x10000
	upcaseSize    = 2 * upcaseEntries

	maxRegions       = 65536
	maxNameUnits     = 255
	maxPathUnits     = 32767
	maxEALength      = 0xFFFF
	regionOffsetBits = 48
	offsetMask       = 1<<regionOffsetBits - 1

	// Versions written and accepted.
	writeMajor = 2
	minMajor   = 1
	maxMajor   = 3
)

// File types in the common header.
const (
	fileTypeImage    = 0
	fileTypeRegion   = 1
	fileTypeObjectID = 2
)

// Region types, as the format intends them (0, 1, 2; see doc.go).
const (
	regionMetadata  = 0
	regionData      = 1
	regionSmallData = 2
	regionCount     = 3
)

// Alignment of objects per region type.
var regionAlign = [regionCount]int64{8, 4096, 8}

// Stream types in LengthAndType bits 48-55.
const (
	streamData      = 0
	streamLinkTable = 1
	streamPEImage   = 2
	streamSparseBit = 1 << 56
)

// Record Flags bits.
const (
	flagReadOnly = 0x0001
	flagHidden   = 0x0002
	flagSystem   = 0x0004
	flagArchive  = 0x0008
	flagSparse   = 0x0010
)

// Extension flags (record bytes 100-101).
const (
	extValid        = 0x0001 // the extension fields are set
	extNoDataStream = 0x0002 // the file had no unnamed data stream
	extAdded        = 0x0004 // added or replaced by this image (not inherited from a parent)
)

// extMagic starts the hostcompute extension block after the parent region sets.
const extMagic = "hcxcim01"

const extBlockSize = 32

// regionOffset is a RegionOffset: region index in the high 16 bits, byte offset in
// the low 48; 0 is null.
type regionOffset uint64

func makeOffset(region int, off int64) regionOffset {
	return regionOffset(uint64(region)<<regionOffsetBits | uint64(off))
}

func (o regionOffset) region() int   { return int(o >> regionOffsetBits) }
func (o regionOffset) offset() int64 { return int64(o & offsetMask) }
func (o regionOffset) String() string {
	if o == 0 {
		return "null"
	}
	return fmt.Sprintf("%d:%#x", o.region(), o.offset())
}

// regionSet names the region files region_<ID>_<i>, i < Count.
type regionSet struct {
	ID    guid.GUID
	Count uint16
}

func (s regionSet) regionName(i int) string   { return fmt.Sprintf("region_%v_%d", s.ID, i) }
func (s regionSet) objectIDName(i int) string { return fmt.Sprintf("objectid_%v_%d", s.ID, i) }

func putRegionSet(b []byte, s regionSet) {
	id := s.ID.ToWindowsArray()
	copy(b[0:16], id[:])
	binary.LittleEndian.PutUint16(b[16:], s.Count)
}

func getRegionSet(b []byte) regionSet {
	var a [16]byte
	copy(a[:], b[0:16])
	return regionSet{ID: guid.FromWindowsArray(a), Count: binary.LittleEndian.Uint16(b[16:])}
}

// commonHeader is the 32-byte header of every CIM file.
type commonHeader struct {
	HeaderLength uint32
	Type         uint8
	Major, Minor uint32
}

func putCommon(b []byte, h commonHeader) {
	copy(b[0:8], magic)
	binary.LittleEndian.PutUint32(b[8:], h.HeaderLength)
	b[12] = h.Type
	binary.LittleEndian.PutUint32(b[16:], h.Major)
	binary.LittleEndian.PutUint32(b[20:], h.Minor)
}

// parseCommon checks the magic, the type and the version of a common header.
func parseCommon(b []byte, file string, want uint8) (commonHeader, error) {
	if len(b) < commonHeaderSize {
		return commonHeader{}, formatErr(file, "common header", 0, "file is %d bytes, shorter than the 32-byte header", len(b))
	}
	if string(b[:8]) != magic {
		return commonHeader{}, formatErr(file, "common header", 0, "bad magic %q", b[:8])
	}
	h := commonHeader{
		HeaderLength: binary.LittleEndian.Uint32(b[8:]),
		Type:         b[12],
		Major:        binary.LittleEndian.Uint32(b[16:]),
		Minor:        binary.LittleEndian.Uint32(b[20:]),
	}
	if h.Type != want {
		return h, formatErr(file, "common header", 12, "file type %d, want %d", h.Type, want)
	}
	if h.Major < minMajor || h.Major > maxMajor {
		return h, formatErr(file, "common header", 16, "unsupported format version %d.%d", h.Major, h.Minor)
	}
	return h, nil
}

// fsHeader is the decoded filesystem (.cim) file.
type fsHeader struct {
	common     commonHeader
	own        regionSet
	fsOffset   regionOffset
	parents    []regionSet
	extension  bool
	removals   regionOffset // object listing the paths this image removes from its parents
	removalLen uint32
}

// parseFSHeader decodes a .cim file's bytes.
func parseFSHeader(b []byte, file string) (*fsHeader, error) {
	c, err := parseCommon(b, file, fileTypeImage)
	if err != nil {
		return nil, err
	}
	if len(b) < fsHeaderSize {
		return nil, formatErr(file, "filesystem header", commonHeaderSize, "file is %d bytes, shorter than the 72-byte header", len(b))
	}
	h := &fsHeader{common: c, own: getRegionSet(b[32:]), fsOffset: regionOffset(binary.LittleEndian.Uint64(b[56:]))}
	n := int(binary.LittleEndian.Uint16(b[70:]))
	end := fsHeaderSize + n*regionSetSize
	if len(b) < end {
		return nil, formatErr(file, "filesystem header", 70, "%d parent region sets need %d bytes, file has %d", n, end, len(b))
	}
	for i := 0; i < n; i++ {
		h.parents = append(h.parents, getRegionSet(b[fsHeaderSize+i*regionSetSize:]))
	}
	if h.own.Count == 0 {
		return nil, formatErr(file, "filesystem header", 48, "own region set has no regions")
	}
	total := int(h.own.Count)
	for i, p := range h.parents {
		if p.Count == 0 {
			return nil, formatErr(file, "filesystem header", int64(fsHeaderSize+i*regionSetSize+16), "parent region set %d has no regions", i)
		}
		total += int(p.Count)
	}
	if total > maxRegions {
		return nil, formatErr(file, "filesystem header", 70, "%d regions, more than %d", total, maxRegions)
	}
	if h.fsOffset == 0 {
		return nil, formatErr(file, "filesystem header", 56, "null filesystem offset")
	}
	if len(b) >= end+extBlockSize && string(b[end:end+8]) == extMagic {
		h.extension = true
		h.removals = regionOffset(binary.LittleEndian.Uint64(b[end+8:]))
		h.removalLen = binary.LittleEndian.Uint32(b[end+16:])
	}
	return h, nil
}

// encodeFSHeader encodes a .cim file, with the extension block if h.extension.
func encodeFSHeader(h *fsHeader) []byte {
	n := fsHeaderSize + len(h.parents)*regionSetSize
	if h.extension {
		n += extBlockSize
	}
	b := make([]byte, n)
	putCommon(b, commonHeader{HeaderLength: uint32(n), Type: fileTypeImage, Major: writeMajor})
	putRegionSet(b[32:], h.own)
	binary.LittleEndian.PutUint64(b[56:], uint64(h.fsOffset))
	binary.LittleEndian.PutUint16(b[70:], uint16(len(h.parents)))
	for i, p := range h.parents {
		putRegionSet(b[fsHeaderSize+i*regionSetSize:], p)
	}
	if !h.extension {
		return b
	}
	e := b[fsHeaderSize+len(h.parents)*regionSetSize:]
	copy(e, extMagic)
	binary.LittleEndian.PutUint64(e[8:], uint64(h.removals))
	binary.LittleEndian.PutUint32(e[16:], h.removalLen)
	return b
}

func encodeRegionHeader(index int, typ uint8) []byte {
	b := make([]byte, regionHeaderSize)
	putCommon(b, commonHeader{HeaderLength: regionHeaderSize, Type: fileTypeRegion, Major: writeMajor})
	binary.LittleEndian.PutUint16(b[32:], uint16(index))
	b[34] = typ
	return b
}

// regionHeader is a decoded region file header.
type regionHeader struct {
	common commonHeader
	index  uint16
	typ    uint8
}

func parseRegionHeader(b []byte, file string) (regionHeader, error) {
	c, err := parseCommon(b, file, fileTypeRegion)
	if err != nil {
		return regionHeader{}, err
	}
	if len(b) < regionHeaderSize {
		return regionHeader{}, formatErr(file, "region header", commonHeaderSize, "file is %d bytes, shorter than the 40-byte header", len(b))
	}
	return regionHeader{common: c, index: binary.LittleEndian.Uint16(b[32:]), typ: b[34]}, nil
}

// objectID is the (length, digest) key of a stored object.
type objectID struct {
	length uint64
	digest [24]byte
}

type objectIDEntry struct {
	id     objectID
	offset int64
}

func encodeObjectIDFile(index int, typ uint8, entries []objectIDEntry) []byte {
	b := make([]byte, objectIDHeaderSize+len(entries)*objectIDEntrySize)
	putCommon(b, commonHeader{HeaderLength: objectIDHeaderSize, Type: fileTypeObjectID, Major: writeMajor})
	binary.LittleEndian.PutUint16(b[32:], uint16(index))
	b[34] = typ
	binary.LittleEndian.PutUint32(b[40:], objectIDHeaderSize)
	binary.LittleEndian.PutUint32(b[44:], uint32(len(entries)))
	for i, e := range entries {
		p := b[objectIDHeaderSize+i*objectIDEntrySize:]
		binary.LittleEndian.PutUint64(p, e.id.length)
		copy(p[8:32], e.id.digest[:])
		binary.LittleEndian.PutUint64(p[32:], uint64(e.offset))
	}
	return b
}

// parseObjectIDFile decodes an object ID file. regionSize bounds the offsets.
func parseObjectIDFile(b []byte, file string, index int, regionSize int64) ([]objectIDEntry, error) {
	if _, err := parseCommon(b, file, fileTypeObjectID); err != nil {
		return nil, err
	}
	if len(b) < objectIDHeaderSize {
		return nil, formatErr(file, "object ID header", commonHeaderSize, "file is %d bytes, shorter than the 48-byte header", len(b))
	}
	if got := int(binary.LittleEndian.Uint16(b[32:])); got != index {
		return nil, formatErr(file, "object ID header", 32, "index %d, want %d", got, index)
	}
	tab := int64(binary.LittleEndian.Uint32(b[40:]))
	n := int64(binary.LittleEndian.Uint32(b[44:]))
	if tab < objectIDHeaderSize || tab > int64(len(b)) || n > (int64(len(b))-tab)/objectIDEntrySize {
		return nil, formatErr(file, "object ID header", 40, "table of %d entries at %d does not fit in %d bytes", n, tab, len(b))
	}
	out := make([]objectIDEntry, n)
	for i := range out {
		p := b[tab+int64(i)*objectIDEntrySize:]
		e := objectIDEntry{offset: int64(binary.LittleEndian.Uint64(p[32:]))}
		e.id.length = binary.LittleEndian.Uint64(p)
		copy(e.id.digest[:], p[8:32])
		if e.offset <= 0 || e.id.length > uint64(regionSize) || e.offset > regionSize-int64(e.id.length) {
			return nil, formatErr(file, fmt.Sprintf("object ID entry %d", i), tab+int64(i)*objectIDEntrySize, "object of %d bytes at %d is outside the %d-byte region", e.id.length, e.offset, regionSize)
		}
		out[i] = e
	}
	return out, nil
}

// filesystem is the Filesystem object.
type filesystem struct {
	upcase   regionOffset
	ftd      regionOffset
	ftdCount uint32
	root     uint32
}

func (f filesystem) encode() []byte {
	b := make([]byte, filesystemSize)
	binary.LittleEndian.PutUint64(b, uint64(f.upcase))
	binary.LittleEndian.PutUint64(b[8:], uint64(f.ftd))
	binary.LittleEndian.PutUint32(b[16:], f.ftdCount)
	binary.LittleEndian.PutUint32(b[20:], f.root)
	return b
}

func parseFilesystem(b []byte) filesystem {
	return filesystem{
		upcase:   regionOffset(binary.LittleEndian.Uint64(b)),
		ftd:      regionOffset(binary.LittleEndian.Uint64(b[8:])),
		ftdCount: binary.LittleEndian.Uint32(b[16:]),
		root:     binary.LittleEndian.Uint32(b[20:]),
	}
}

// ftdEntry is one file table directory entry.
type ftdEntry struct {
	offset    regionOffset
	count     uint16
	entrySize uint16
}

func parseFTDEntry(b []byte) ftdEntry {
	return ftdEntry{
		offset:    regionOffset(binary.LittleEndian.Uint64(b)),
		count:     binary.LittleEndian.Uint16(b[8:]),
		entrySize: binary.LittleEndian.Uint16(b[10:]),
	}
}

// stream is a Stream: data offset plus length, type and sparse bit.
type stream struct {
	offset regionOffset
	length int64
	typ    uint8
	sparse bool
}

func (s stream) put(b []byte) {
	binary.LittleEndian.PutUint64(b, uint64(s.offset))
	v := uint64(s.length) | uint64(s.typ)<<48
	if s.sparse {
		v |= streamSparseBit
	}
	binary.LittleEndian.PutUint64(b[8:], v)
}

func getStream(b []byte) stream {
	v := binary.LittleEndian.Uint64(b[8:])
	return stream{
		offset: regionOffset(binary.LittleEndian.Uint64(b)),
		length: int64(v & offsetMask),
		typ:    uint8(v >> 48),
		sparse: v&streamSparseBit != 0,
	}
}

// record is a decoded file record.
type record struct {
	flags       uint16
	eaLength    uint16
	reparseTag  uint32
	times       [4]uint64 // creation, last write, change, last access (on-disk order)
	data        stream
	sd          regionOffset
	ea          regionOffset
	reparse     regionOffset
	streamTable regionOffset
	parentID    uint32
	baseRegion  uint16
	// hostcompute extension
	extFlags   uint16
	attributes uint32
}

func (r *record) encode(b []byte) {
	binary.LittleEndian.PutUint16(b, r.flags)
	binary.LittleEndian.PutUint16(b[2:], r.eaLength)
	binary.LittleEndian.PutUint32(b[4:], r.reparseTag)
	for i, t := range r.times {
		binary.LittleEndian.PutUint64(b[8+8*i:], t)
	}
	r.data.put(b[40:])
	binary.LittleEndian.PutUint64(b[56:], uint64(r.sd))
	binary.LittleEndian.PutUint64(b[64:], uint64(r.ea))
	binary.LittleEndian.PutUint64(b[72:], uint64(r.reparse))
	binary.LittleEndian.PutUint64(b[80:], uint64(r.streamTable))
	binary.LittleEndian.PutUint32(b[88:], r.parentID)
	binary.LittleEndian.PutUint16(b[92:], r.baseRegion)
	binary.LittleEndian.PutUint32(b[96:], r.attributes)
	binary.LittleEndian.PutUint16(b[100:], r.extFlags)
}

// parseRecord decodes min(len(b), recordSize) bytes; missing fields stay zero, as the
// public readers do for shorter and longer records.
func parseRecord(src []byte) record {
	var b [recordSize]byte
	copy(b[:], src)
	r := record{
		flags:       binary.LittleEndian.Uint16(b[0:]),
		eaLength:    binary.LittleEndian.Uint16(b[2:]),
		reparseTag:  binary.LittleEndian.Uint32(b[4:]),
		data:        getStream(b[40:]),
		sd:          regionOffset(binary.LittleEndian.Uint64(b[56:])),
		ea:          regionOffset(binary.LittleEndian.Uint64(b[64:])),
		reparse:     regionOffset(binary.LittleEndian.Uint64(b[72:])),
		streamTable: regionOffset(binary.LittleEndian.Uint64(b[80:])),
		parentID:    binary.LittleEndian.Uint32(b[88:]),
		baseRegion:  binary.LittleEndian.Uint16(b[92:]),
		attributes:  binary.LittleEndian.Uint32(b[96:]),
		extFlags:    binary.LittleEndian.Uint16(b[100:]),
	}
	for i := range r.times {
		r.times[i] = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	return r
}
