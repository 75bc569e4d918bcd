package vhd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

// Sizes and constants of the format.
const (
	// SectorSize is the VHD sector size in bytes.
	SectorSize = 512
	// FooterSize is the size of the hard disk footer.
	FooterSize = 512
	// Version is the only file format version defined, 1.0.
	Version uint32 = 0x00010000
	// FeatureReserved is the features bit that must always be set.
	FeatureReserved uint32 = 0x00000002
	// FeatureTemporary marks a disk that may be deleted on shutdown.
	FeatureTemporary uint32 = 0x00000001
	// FixedDataOffset is the footer data offset of a fixed disk (all ones).
	FixedDataOffset uint64 = 0xFFFFFFFFFFFFFFFF

	// HostOSWindows is the creator host OS code "Wi2k".
	HostOSWindows uint32 = 0x5769326B
	// HostOSMac is the creator host OS code "Mac ".
	HostOSMac uint32 = 0x4D616320

	// MaxCHSSectors is the largest sector count a CHS geometry can describe,
	// 65535×16×255.
	MaxCHSSectors = 65535 * 16 * 255
)

const footerCookie = "conectix"

// Epoch is the origin of VHD time stamps, 2000-01-01 00:00:00 UTC.
var Epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// TimeStamp converts t to a VHD time stamp: seconds since [Epoch], clamped to the
// range of a uint32.
func TimeStamp(t time.Time) uint32 {
	s := t.Unix() - Epoch.Unix()
	if s < 0 {
		return 0
	}
	if s > 0xFFFFFFFF {
		return 0xFFFFFFFF
	}
	return uint32(s)
}

// TimeFromStamp converts a VHD time stamp to a time in UTC.
func TimeFromStamp(ts uint32) time.Time {
	return Epoch.Add(time.Duration(ts) * time.Second)
}

// DiskType is the disk type field of the footer.
type DiskType uint32

// Disk types defined by the specification. Values 1, 5 and 6 are deprecated.
const (
	DiskTypeNone         DiskType = 0
	DiskTypeFixed        DiskType = 2
	DiskTypeDynamic      DiskType = 3
	DiskTypeDifferencing DiskType = 4
)

func (t DiskType) String() string {
	switch t {
	case DiskTypeNone:
		return "none"
	case DiskTypeFixed:
		return "fixed"
	case DiskTypeDynamic:
		return "dynamic"
	case DiskTypeDifferencing:
		return "differencing"
	}
	return fmt.Sprintf("DiskType(%d)", uint32(t))
}

// Geometry is the cylinder/head/sector geometry stored in the footer.
type Geometry struct {
	Cylinders       uint16
	Heads           uint8
	SectorsPerTrack uint8
}

// Capacity returns the size in bytes the geometry describes.
func (g Geometry) Capacity() int64 {
	return int64(g.Cylinders) * int64(g.Heads) * int64(g.SectorsPerTrack) * SectorSize
}

// GeometryForSize computes the CHS geometry of a disk of size bytes with the
// algorithm of the VHD specification's appendix. The capacity it describes is never
// larger than size; sizes beyond [MaxCHSSectors] sectors are clamped.
func GeometryForSize(size int64) Geometry {
	total := size / SectorSize
	if total < 0 {
		total = 0
	}
	if total > MaxCHSSectors {
		total = MaxCHSSectors
	}
	var spt, heads, cth int64
	if total >= 65535*16*63 {
		spt, heads = 255, 16
		cth = total / spt
	} else {
		spt = 17
		cth = total / spt
		heads = (cth + 1023) / 1024
		if heads < 4 {
			heads = 4
		}
		if cth >= heads*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = total / spt
		}
		if cth >= heads*1024 {
			spt, heads = 63, 16
			cth = total / spt
		}
	}
	return Geometry{Cylinders: uint16(cth / heads), Heads: uint8(heads), SectorsPerTrack: uint8(spt)}
}

// Footer is the 512-byte hard disk footer at the end of every VHD (and copied at
// offset 0 of dynamic and differencing disks). Reserved bytes are not kept: they
// are written as zeros.
type Footer struct {
	Features       uint32
	Version        uint32
	DataOffset     uint64 // FixedDataOffset for fixed disks, else the dynamic header offset
	TimeStamp      uint32 // seconds since Epoch
	CreatorApp     [4]byte
	CreatorVersion uint32
	CreatorHostOS  uint32
	OriginalSize   uint64
	CurrentSize    uint64
	Geometry       Geometry
	DiskType       DiskType
	// Checksum is the stored checksum. ParseFooter has verified it; MarshalBinary
	// ignores it and writes the correct one.
	Checksum   uint32
	UniqueID   [16]byte
	SavedState uint8
}

// Footer field offsets.
const (
	footerOffFeatures   = 8
	footerOffVersion    = 12
	footerOffDataOffset = 16
	footerOffCurrent    = 48
	footerOffDiskType   = 60
	footerOffChecksum   = 64
	footerOffSavedState = 84
)

// checksum returns the ones' complement of the byte sum of b, skipping the four
// bytes of the checksum field at skip.
func checksum(b []byte, skip int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= skip && i < skip+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// MarshalBinary encodes the footer into 512 bytes with a correct checksum.
func (f *Footer) MarshalBinary() ([]byte, error) {
	b := make([]byte, FooterSize)
	f.put(b)
	return b, nil
}

func (f *Footer) put(b []byte) {
	be := binary.BigEndian
	clear(b[:FooterSize])
	copy(b[0:8], footerCookie)
	be.PutUint32(b[8:], f.Features)
	be.PutUint32(b[12:], f.Version)
	be.PutUint64(b[16:], f.DataOffset)
	be.PutUint32(b[24:], f.TimeStamp)
	copy(b[28:32], f.CreatorApp[:])
	be.PutUint32(b[32:], f.CreatorVersion)
	be.PutUint32(b[36:], f.CreatorHostOS)
	be.PutUint64(b[40:], f.OriginalSize)
	be.PutUint64(b[48:], f.CurrentSize)
	be.PutUint16(b[56:], f.Geometry.Cylinders)
	b[58] = f.Geometry.Heads
	b[59] = f.Geometry.SectorsPerTrack
	be.PutUint32(b[60:], uint32(f.DiskType))
	copy(b[68:84], f.UniqueID[:])
	b[84] = f.SavedState
	be.PutUint32(b[64:], checksum(b[:FooterSize], footerOffChecksum))
}

// ParseFooter decodes and validates a 512-byte footer. Errors are *FormatError
// with offsets relative to the start of b; see [ParseFooterAt] for file offsets.
func ParseFooter(b []byte) (*Footer, error) {
	return ParseFooterAt(b, 0)
}

// ParseFooterAt is ParseFooter for a footer read from file offset base: the
// offsets in errors are base plus the offset of the bad field.
//
// It checks the cookie, the checksum, the version, the disk type, and that the data
// offset is all ones exactly for fixed disks.
func ParseFooterAt(b []byte, base int64) (*Footer, error) {
	const s = "footer"
	if len(b) < FooterSize {
		return nil, formatErr(s, base+int64(len(b)), fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), FooterSize))
	}
	b = b[:FooterSize]
	if !bytes.Equal(b[:8], []byte(footerCookie)) {
		return nil, formatErrf(s, base, "cookie %q, want %q", b[:8], footerCookie)
	}
	be := binary.BigEndian
	f := &Footer{
		Features:       be.Uint32(b[8:]),
		Version:        be.Uint32(b[12:]),
		DataOffset:     be.Uint64(b[16:]),
		TimeStamp:      be.Uint32(b[24:]),
		CreatorVersion: be.Uint32(b[32:]),
		CreatorHostOS:  be.Uint32(b[36:]),
		OriginalSize:   be.Uint64(b[40:]),
		CurrentSize:    be.Uint64(b[48:]),
		Geometry: Geometry{
			Cylinders:       be.Uint16(b[56:]),
			Heads:           b[58],
			SectorsPerTrack: b[59],
		},
		DiskType:   DiskType(be.Uint32(b[60:])),
		Checksum:   be.Uint32(b[64:]),
		SavedState: b[84],
	}
	copy(f.CreatorApp[:], b[28:32])
	copy(f.UniqueID[:], b[68:84])
	if want := checksum(b, footerOffChecksum); want != f.Checksum {
		return nil, formatErr(s, base+footerOffChecksum, fmt.Errorf("%w: stored 0x%08X, computed 0x%08X", ErrChecksum, f.Checksum, want))
	}
	if f.Version != Version {
		return nil, formatErr(s, base+footerOffVersion, fmt.Errorf("%w: file format version 0x%08X", ErrUnsupported, f.Version))
	}
	switch f.DiskType {
	case DiskTypeFixed:
		if f.DataOffset != FixedDataOffset {
			return nil, formatErrf(s, base+footerOffDataOffset, "fixed disk with data offset 0x%X, want all ones", f.DataOffset)
		}
	case DiskTypeDynamic, DiskTypeDifferencing:
		if f.DataOffset == FixedDataOffset || f.DataOffset%SectorSize != 0 || f.DataOffset > 1<<62 {
			return nil, formatErrf(s, base+footerOffDataOffset, "%s disk with data offset 0x%X", f.DiskType, f.DataOffset)
		}
	default:
		return nil, formatErr(s, base+footerOffDiskType, fmt.Errorf("%w: disk type %d", ErrUnsupported, uint32(f.DiskType)))
	}
	if f.CurrentSize > 1<<62 {
		return nil, formatErrf(s, base+footerOffCurrent, "current size %d too large", f.CurrentSize)
	}
	return f, nil
}

// NewFixedFooter returns the footer of a fixed disk of size bytes, with the given
// time stamp and unique ID, creator application "win ", version 10.0 and host OS
// Windows, and the specification's CHS geometry.
func NewFixedFooter(size int64, ts time.Time, uniqueID [16]byte) *Footer {
	return &Footer{
		Features:       FeatureReserved,
		Version:        Version,
		DataOffset:     FixedDataOffset,
		TimeStamp:      TimeStamp(ts),
		CreatorApp:     DefaultCreatorApp,
		CreatorVersion: DefaultCreatorVersion,
		CreatorHostOS:  HostOSWindows,
		OriginalSize:   uint64(size),
		CurrentSize:    uint64(size),
		Geometry:       GeometryForSize(size),
		DiskType:       DiskTypeFixed,
		UniqueID:       uniqueID,
	}
}

// Defaults for the creator fields written by this package.
var (
	// DefaultCreatorApp is "win ", the value Windows writes. qemu 7.2 trusts
	// Current Size only for a few creators, "win " among them.
	DefaultCreatorApp = [4]byte{'w', 'i', 'n', ' '}
	// DefaultCreatorVersion is 10.0, as Windows 10 and later write.
	DefaultCreatorVersion uint32 = 0x000A0000
)

// AppendFixedFooter writes a fixed-disk footer at offset size of w, turning the
// raw image of size bytes in front of it into a fixed VHD. size should be a multiple
// of 512. The footer is f if f is not nil (its DiskType, DataOffset and sizes are
// used as given), else [NewFixedFooter](size, time stamp 0, zero unique ID).
//
// Calling it twice with different sizes leaves two footers; it does not look for an
// existing one.
func AppendFixedFooter(w io.WriterAt, size int64, f *Footer) error {
	if size < 0 {
		return fmt.Errorf("vhd: appending footer: negative size %d", size)
	}
	if f == nil {
		f = NewFixedFooter(size, Epoch, [16]byte{})
	}
	b, _ := f.MarshalBinary()
	if _, err := w.WriteAt(b, size); err != nil {
		return fmt.Errorf("vhd: appending footer at offset %d: %w", size, err)
	}
	return nil
}

// AppendFixedFooterFile appends a fixed-disk footer to the end of the raw image at
// path, using [NewFixedFooter] with the given time stamp and unique ID.
func AppendFixedFooterFile(path string, ts time.Time, uniqueID [16]byte) (err error) {
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
	}()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	if err := AppendFixedFooter(file, fi.Size(), NewFixedFooter(fi.Size(), ts, uniqueID)); err != nil {
		return err
	}
	return file.Sync()
}
