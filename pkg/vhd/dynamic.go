package vhd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// Dynamic disk header constants.
const (
	// DynamicHeaderSize is the size of the dynamic disk header.
	DynamicHeaderSize = 1024
	// DefaultBlockSize is the block size Create uses when none is given, 2 MiB.
	DefaultBlockSize = 2 << 20
	// MaxBlockSize is the largest block size this package accepts, 256 MiB.
	MaxBlockSize = 256 << 20
	// BATUnallocated is the BAT entry of a block that is not allocated.
	BATUnallocated uint32 = 0xFFFFFFFF
	// NumParentLocators is the number of parent locator entries in the header.
	NumParentLocators = 8
)

const (
	headerCookie          = "cxsparse"
	headerOffTableOffset  = 16
	headerOffVersion      = 24
	headerOffMaxEntries   = 28
	headerOffBlockSize    = 32
	headerOffChecksum     = 36
	headerOffParentName   = 64
	headerOffLocators     = 576
	parentNameSize        = 512
	parentLocatorSize     = 24
	maxParentLocatorBytes = 64 << 10
)

// Parent locator platform codes.
const (
	PlatformNone            uint32 = 0
	PlatformWindowsRelative uint32 = 0x57327275 // "W2ru", UTF-16LE relative path
	PlatformWindowsAbsolute uint32 = 0x57326B75 // "W2ku", UTF-16LE absolute path
	PlatformWi2r            uint32 = 0x57693272 // deprecated
	PlatformWi2k            uint32 = 0x5769326B // deprecated
	PlatformMacAlias        uint32 = 0x4D616320 // "Mac "
	PlatformMacURL          uint32 = 0x4D616358 // "MacX", UTF-8 file URL
)

// ParentLocator is one of the eight parent locator entries of a dynamic header.
type ParentLocator struct {
	PlatformCode uint32
	// DataSpace is the space reserved for the data; the specification says in
	// sectors, some writers store bytes. Readers use DataLength.
	DataSpace  uint32
	DataLength uint32
	// DataOffset is the absolute byte offset of the locator data in the file.
	DataOffset uint64
}

// DynamicHeader is the 1024-byte dynamic disk header of dynamic and differencing
// disks. Reserved bytes are not kept.
type DynamicHeader struct {
	DataOffset      uint64 // unused, all ones
	TableOffset     uint64 // absolute byte offset of the BAT
	HeaderVersion   uint32
	MaxTableEntries uint32
	BlockSize       uint32
	// Checksum is the stored checksum; MarshalBinary writes the correct one.
	Checksum        uint32
	ParentUniqueID  [16]byte
	ParentTimeStamp uint32
	// ParentName is the parent's file name, stored as UTF-16BE in at most 512 bytes.
	ParentName     string
	ParentLocators [NumParentLocators]ParentLocator
}

// MarshalBinary encodes the header into 1024 bytes with a correct checksum. It fails
// if the parent name does not fit in 512 bytes of UTF-16.
func (h *DynamicHeader) MarshalBinary() ([]byte, error) {
	name := utf16.Encode([]rune(h.ParentName))
	if len(name)*2 > parentNameSize {
		return nil, fmt.Errorf("vhd: parent name %q longer than %d bytes in UTF-16", h.ParentName, parentNameSize)
	}
	be := binary.BigEndian
	b := make([]byte, DynamicHeaderSize)
	copy(b[0:8], headerCookie)
	be.PutUint64(b[8:], h.DataOffset)
	be.PutUint64(b[16:], h.TableOffset)
	be.PutUint32(b[24:], h.HeaderVersion)
	be.PutUint32(b[28:], h.MaxTableEntries)
	be.PutUint32(b[32:], h.BlockSize)
	copy(b[40:56], h.ParentUniqueID[:])
	be.PutUint32(b[56:], h.ParentTimeStamp)
	for i, u := range name {
		be.PutUint16(b[headerOffParentName+2*i:], u)
	}
	for i, l := range h.ParentLocators {
		e := b[headerOffLocators+parentLocatorSize*i:]
		be.PutUint32(e[0:], l.PlatformCode)
		be.PutUint32(e[4:], l.DataSpace)
		be.PutUint32(e[8:], l.DataLength)
		be.PutUint64(e[16:], l.DataOffset)
	}
	be.PutUint32(b[headerOffChecksum:], checksum(b, headerOffChecksum))
	return b, nil
}

// ParseDynamicHeader decodes and validates a dynamic disk header. Errors are
// *FormatError with offsets relative to b; see [ParseDynamicHeaderAt].
func ParseDynamicHeader(b []byte) (*DynamicHeader, error) {
	return ParseDynamicHeaderAt(b, 0)
}

// ParseDynamicHeaderAt is ParseDynamicHeader for a header read at file offset base.
// It checks the cookie, checksum, version and block size (a power of two from 512
// bytes to [MaxBlockSize]); how the BAT fits in the file is checked by [Open].
func ParseDynamicHeaderAt(b []byte, base int64) (*DynamicHeader, error) {
	const s = "dynamic header"
	if len(b) < DynamicHeaderSize {
		return nil, formatErr(s, base+int64(len(b)), fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), DynamicHeaderSize))
	}
	b = b[:DynamicHeaderSize]
	if !bytes.Equal(b[:8], []byte(headerCookie)) {
		return nil, formatErrf(s, base, "cookie %q, want %q", b[:8], headerCookie)
	}
	be := binary.BigEndian
	h := &DynamicHeader{
		DataOffset:      be.Uint64(b[8:]),
		TableOffset:     be.Uint64(b[16:]),
		HeaderVersion:   be.Uint32(b[24:]),
		MaxTableEntries: be.Uint32(b[28:]),
		BlockSize:       be.Uint32(b[32:]),
		Checksum:        be.Uint32(b[36:]),
		ParentTimeStamp: be.Uint32(b[56:]),
	}
	copy(h.ParentUniqueID[:], b[40:56])
	if want := checksum(b, headerOffChecksum); want != h.Checksum {
		return nil, formatErr(s, base+headerOffChecksum, fmt.Errorf("%w: stored 0x%08X, computed 0x%08X", ErrChecksum, h.Checksum, want))
	}
	if h.HeaderVersion != Version {
		return nil, formatErr(s, base+headerOffVersion, fmt.Errorf("%w: header version 0x%08X", ErrUnsupported, h.HeaderVersion))
	}
	if bs := h.BlockSize; bs < SectorSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return nil, formatErrf(s, base+headerOffBlockSize, "block size %d is not a power of two from 512 to %d", bs, MaxBlockSize)
	}
	if h.TableOffset%SectorSize != 0 || h.TableOffset > 1<<62 {
		return nil, formatErrf(s, base+headerOffTableOffset, "table offset 0x%X", h.TableOffset)
	}
	name := make([]uint16, 0, parentNameSize/2)
	for i := 0; i < parentNameSize; i += 2 {
		u := be.Uint16(b[headerOffParentName+i:])
		if u == 0 {
			break
		}
		name = append(name, u)
	}
	h.ParentName = string(utf16.Decode(name))
	for i := range h.ParentLocators {
		e := b[headerOffLocators+parentLocatorSize*i:]
		h.ParentLocators[i] = ParentLocator{
			PlatformCode: be.Uint32(e[0:]),
			DataSpace:    be.Uint32(e[4:]),
			DataLength:   be.Uint32(e[8:]),
			DataOffset:   be.Uint64(e[16:]),
		}
	}
	return h, nil
}

// batBytes returns the size of a BAT of n entries padded to a sector.
func batBytes(n uint32) int64 {
	return (int64(n)*4 + SectorSize - 1) / SectorSize * SectorSize
}

// bitmapBytes returns the size of a block's sector bitmap padded to a sector.
func bitmapBytes(blockSize uint32) int64 {
	sectors := int64(blockSize) / SectorSize
	return ((sectors+7)/8 + SectorSize - 1) / SectorSize * SectorSize
}

// encodeUTF16LE encodes s as UTF-16LE without a terminator.
func encodeUTF16LE(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// decodeUTF16LE decodes UTF-16LE bytes, stopping at a NUL.
func decodeUTF16LE(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
