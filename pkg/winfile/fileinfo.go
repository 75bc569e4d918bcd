package winfile

import (
	"encoding"
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Filetime is a Windows FILETIME: the number of 100-nanosecond intervals since
// 1601-01-01T00:00:00Z. Its on-disk form is a little-endian uint64.
type Filetime uint64

const (
	// unixEpochSeconds is the number of seconds from 1601-01-01 to 1970-01-01.
	unixEpochSeconds = 11644473600
	intervalsPerSec  = 10_000_000
)

// NewFiletime converts t to a FILETIME, truncating to 100 ns. The seconds and
// the sub-second part are converted separately, so there is no int64
// nanosecond overflow in any year. Times before 1601 become 0; times after the
// largest FILETIME (in the year 60056) become math.MaxUint64.
func NewFiletime(t time.Time) Filetime {
	sec := t.Unix()
	if sec < -unixEpochSeconds {
		return 0
	}
	if sec > math.MaxInt64-unixEpochSeconds {
		return math.MaxUint64
	}
	s := uint64(sec + unixEpochSeconds)
	frac := uint64(t.Nanosecond() / 100)
	hi, lo := bits.Mul64(s, intervalsPerSec)
	if hi != 0 {
		return math.MaxUint64
	}
	v, carry := bits.Add64(lo, frac, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return Filetime(v)
}

// Time returns f as a UTC time. It is the exact inverse of [NewFiletime] for
// every FILETIME, and for every time between 1601 and 60056 that is a whole
// number of 100 ns intervals.
func (f Filetime) Time() time.Time {
	sec := int64(uint64(f)/intervalsPerSec) - unixEpochSeconds
	nsec := int64(uint64(f)%intervalsPerSec) * 100
	return time.Unix(sec, nsec).UTC()
}

// IsZero reports whether f is 0, which Windows treats as "no time" and, when
// setting file information, as "leave unchanged".
func (f Filetime) IsZero() bool { return f == 0 }

// BasicInfoSize is the size of the FILE_BASIC_INFO encoding.
const BasicInfoSize = 40

// BasicInfo is the FILE_BASIC_INFO structure: the four file times and the
// attribute bits. It plays the role of go-winio's FileBasicInfo.
type BasicInfo struct {
	CreationTime   Filetime
	LastAccessTime Filetime
	LastWriteTime  Filetime
	ChangeTime     Filetime // metadata change time
	FileAttributes uint32   // Attr* bits
}

var (
	_ encoding.BinaryMarshaler   = (*BasicInfo)(nil)
	_ encoding.BinaryAppender    = (*BasicInfo)(nil)
	_ encoding.BinaryUnmarshaler = (*BasicInfo)(nil)
)

// MarshalBinary returns the 40-byte FILE_BASIC_INFO layout: four
// little-endian FILETIMEs, the attributes, and 4 zero padding bytes.
func (b *BasicInfo) MarshalBinary() ([]byte, error) {
	return b.AppendBinary(make([]byte, 0, BasicInfoSize))
}

// AppendBinary appends the encoding produced by [BasicInfo.MarshalBinary].
func (b *BasicInfo) AppendBinary(dst []byte) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.CreationTime))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.LastAccessTime))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.LastWriteTime))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.ChangeTime))
	dst = binary.LittleEndian.AppendUint32(dst, b.FileAttributes)
	dst = append(dst, 0, 0, 0, 0)
	return dst, nil
}

// UnmarshalBinary decodes the 40-byte FILE_BASIC_INFO layout. The padding
// bytes are ignored. Any other length is a *FormatError.
func (b *BasicInfo) UnmarshalBinary(p []byte) error {
	if len(p) != BasicInfoSize {
		return formatErr("FILE_BASIC_INFO", 0, "length %d, want %d", len(p), BasicInfoSize)
	}
	*b = BasicInfo{
		CreationTime:   Filetime(binary.LittleEndian.Uint64(p[0:])),
		LastAccessTime: Filetime(binary.LittleEndian.Uint64(p[8:])),
		LastWriteTime:  Filetime(binary.LittleEndian.Uint64(p[16:])),
		ChangeTime:     Filetime(binary.LittleEndian.Uint64(p[24:])),
		FileAttributes: binary.LittleEndian.Uint32(p[32:]),
	}
	return nil
}

// File attribute bits (FILE_ATTRIBUTE_*), as stored in
// [BasicInfo.FileAttributes].
const (
	AttrReadOnly           = 0x00000001
	AttrHidden             = 0x00000002
	AttrSystem             = 0x00000004
	AttrDirectory          = 0x00000010
	AttrArchive            = 0x00000020
	AttrDevice             = 0x00000040 // reserved
	AttrNormal             = 0x00000080 // valid only alone
	AttrTemporary          = 0x00000100
	AttrSparseFile         = 0x00000200
	AttrReparsePoint       = 0x00000400
	AttrCompressed         = 0x00000800
	AttrOffline            = 0x00001000
	AttrNotContentIndexed  = 0x00002000
	AttrEncrypted          = 0x00004000
	AttrIntegrityStream    = 0x00008000
	AttrVirtual            = 0x00010000
	AttrNoScrubData        = 0x00020000
	AttrRecallOnOpen       = 0x00040000 // also FILE_ATTRIBUTE_EA in some contexts
	AttrPinned             = 0x00080000
	AttrUnpinned           = 0x00100000
	AttrRecallOnDataAccess = 0x00400000
)

var attrNames = []struct {
	bit  uint32
	name string
}{
	{AttrReadOnly, "READONLY"},
	{AttrHidden, "HIDDEN"},
	{AttrSystem, "SYSTEM"},
	{AttrDirectory, "DIRECTORY"},
	{AttrArchive, "ARCHIVE"},
	{AttrDevice, "DEVICE"},
	{AttrNormal, "NORMAL"},
	{AttrTemporary, "TEMPORARY"},
	{AttrSparseFile, "SPARSE_FILE"},
	{AttrReparsePoint, "REPARSE_POINT"},
	{AttrCompressed, "COMPRESSED"},
	{AttrOffline, "OFFLINE"},
	{AttrNotContentIndexed, "NOT_CONTENT_INDEXED"},
	{AttrEncrypted, "ENCRYPTED"},
	{AttrIntegrityStream, "INTEGRITY_STREAM"},
	{AttrVirtual, "VIRTUAL"},
	{AttrNoScrubData, "NO_SCRUB_DATA"},
	{AttrRecallOnOpen, "RECALL_ON_OPEN"},
	{AttrPinned, "PINNED"},
	{AttrUnpinned, "UNPINNED"},
	{AttrRecallOnDataAccess, "RECALL_ON_DATA_ACCESS"},
}

// AttributeString renders attribute bits for display: the names of the known
// bits in increasing bit order joined by "|", then any unknown bits as one
// hexadecimal number. For example 0x30 is "DIRECTORY|ARCHIVE" and 0x800021
// is "READONLY|ARCHIVE|0x800000". Zero is "0".
func AttributeString(a uint32) string {
	if a == 0 {
		return "0"
	}
	var parts []string
	for _, n := range attrNames {
		if a&n.bit != 0 {
			parts = append(parts, n.name)
			a &^= n.bit
		}
	}
	if a != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(a), 16))
	}
	return strings.Join(parts, "|")
}
