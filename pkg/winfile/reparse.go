package winfile

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// Reparse tags that matter for container layers.
const (
	ReparseTagMountPoint   uint32 = 0xA0000003 // IO_REPARSE_TAG_MOUNT_POINT: junction
	ReparseTagSymlink      uint32 = 0xA000000C // IO_REPARSE_TAG_SYMLINK
	ReparseTagWCI          uint32 = 0x80000018 // IO_REPARSE_TAG_WCI: container isolation placeholder
	ReparseTagWCI1         uint32 = 0x90001018 // IO_REPARSE_TAG_WCI_1
	ReparseTagWCITombstone uint32 = 0xA000001F // IO_REPARSE_TAG_WCI_TOMBSTONE: deletion marker
	ReparseTagWCILink      uint32 = 0xA0000027 // IO_REPARSE_TAG_WCI_LINK
	ReparseTagWCILink1     uint32 = 0xA0001027 // IO_REPARSE_TAG_WCI_LINK_1
)

// Reparse tag bits.
const (
	ReparseTagMicrosoftBit     uint32 = 0x80000000 // tag owned by Microsoft
	ReparseTagNameSurrogateBit uint32 = 0x20000000 // the file stands in for another named entity
	ReparseTagDirectoryBit     uint32 = 0x10000000 // the tag may be set on a non-empty directory
)

// SymlinkFlagRelative is the ReparsePoint flag of a symlink whose substitute
// name is relative to the link's directory (SYMLINK_FLAG_RELATIVE).
const SymlinkFlagRelative = 1

const (
	// ReparseHeaderSize is the size of the tag and length header that starts
	// every reparse buffer.
	ReparseHeaderSize = 8
	// MaxReparseDataLength is the largest ReparseDataLength the 16-bit field
	// can hold. Windows itself refuses whole buffers above 16 KiB
	// (MAXIMUM_REPARSE_DATA_BUFFER_SIZE); this package does not apply that
	// limit.
	MaxReparseDataLength = 0xFFFF

	reparseStructureName = "reparse buffer"
)

// ReparsePoint is a decoded reparse buffer, the payload of a
// StreamReparseData stream.
type ReparsePoint struct {
	// Tag is the reparse tag, such as ReparseTagSymlink.
	Tag uint32

	// SubstituteName and PrintName are the two names of a symlink or mount
	// point buffer. The substitute name is what the system follows (an NT
	// path such as \??\C:\target, or a relative path); the print name is
	// the target as the user gave it.
	SubstituteName, PrintName string
	// Flags holds the symlink flags (SymlinkFlagRelative). Mount points have
	// no flags field, so it must be 0 for them.
	Flags uint32

	// Data holds, for every tag other than symlink and mount point, the
	// bytes after the 8-byte header, uninterpreted. For tags without the
	// Microsoft bit that includes the 16-byte GUID of
	// REPARSE_GUID_DATA_BUFFER.
	Data []byte
}

// IsSymlinkOrMountPoint reports whether rp has a symlink or mount point tag,
// the tags whose names this package decodes.
func (rp *ReparsePoint) IsSymlinkOrMountPoint() bool {
	return rp.Tag == ReparseTagSymlink || rp.Tag == ReparseTagMountPoint
}

// Target returns the print name of a symlink or mount point, which is the
// link target as tar and go-winio report it, and "" for other tags.
func (rp *ReparsePoint) Target() string {
	if !rp.IsSymlinkOrMountPoint() {
		return ""
	}
	return rp.PrintName
}

// linkFixedSize returns the size of the fields between the header and the
// path buffer for a symlink or mount point tag.
func linkFixedSize(tag uint32) int {
	if tag == ReparseTagSymlink {
		return 12 // four name offsets and lengths, then Flags
	}
	return 8
}

// DecodeReparsePoint decodes a reparse buffer: the 8-byte header (tag,
// ReparseDataLength, reserved), then the tag's data. Symlink and mount point
// data is decoded into names; every other tag is kept as Data. The reserved
// field and any bytes after ReparseDataLength are ignored.
//
// A buffer shorter than its header, a ReparseDataLength beyond the buffer, or
// for links a short fixed part, a name offset or length that is odd or
// outside the path buffer, or a name that is not valid UTF-16 gives a
// *FormatError.
//
// The result does not alias b.
func DecodeReparsePoint(b []byte) (*ReparsePoint, error) {
	if len(b) < ReparseHeaderSize {
		return nil, truncErr(reparseStructureName, 0, "header", ReparseHeaderSize, len(b))
	}
	tag := binary.LittleEndian.Uint32(b)
	dataLen := int(binary.LittleEndian.Uint16(b[4:]))
	if ReparseHeaderSize+dataLen > len(b) {
		return nil, formatErr(reparseStructureName, 4, "ReparseDataLength %d exceeds the %d bytes after the header", dataLen, len(b)-ReparseHeaderSize)
	}
	data := b[ReparseHeaderSize : ReparseHeaderSize+dataLen]
	rp := &ReparsePoint{Tag: tag}
	if !rp.IsSymlinkOrMountPoint() {
		if len(data) > 0 {
			rp.Data = bytes.Clone(data)
		}
		return rp, nil
	}
	fixed := linkFixedSize(tag)
	if len(data) < fixed {
		return nil, formatErr(reparseStructureName, ReparseHeaderSize, "ReparseDataLength %d is shorter than the %d-byte link fields", dataLen, fixed)
	}
	if tag == ReparseTagSymlink {
		rp.Flags = binary.LittleEndian.Uint32(data[8:])
	}
	path := data[fixed:]
	pathStart := ReparseHeaderSize + fixed
	var err error
	rp.SubstituteName, err = linkName(path, pathStart, data[0:4], "substitute name", ReparseHeaderSize)
	if err != nil {
		return nil, err
	}
	rp.PrintName, err = linkName(path, pathStart, data[4:8], "print name", ReparseHeaderSize+4)
	if err != nil {
		return nil, err
	}
	return rp, nil
}

// linkName decodes one name of a link path buffer from its offset and length
// fields (field, found at fieldOff in the whole buffer).
func linkName(path []byte, pathStart int, field []byte, what string, fieldOff int) (string, error) {
	off := int(binary.LittleEndian.Uint16(field))
	n := int(binary.LittleEndian.Uint16(field[2:]))
	switch {
	case off%2 != 0 || n%2 != 0:
		return "", formatErr(reparseStructureName, int64(fieldOff), "%s offset %d or length %d is odd", what, off, n)
	case off+n > len(path):
		return "", formatErr(reparseStructureName, int64(fieldOff), "%s at %d+%d is outside the %d-byte path buffer", what, off, n, len(path))
	}
	s, bad, err := decodeUTF16(path[off : off+n])
	if err != nil {
		return "", &FormatError{Structure: reparseStructureName, Offset: int64(pathStart + off + bad), Reason: what + " is not valid UTF-16", Err: err}
	}
	return s, nil
}

// Encode returns the reparse buffer for rp.
//
// Symlinks and mount points use the canonical layout: the substitute name at
// offset 0 of the path buffer, then the print name, each followed by a UTF-16
// NUL that the lengths do not count. Other tags are the header followed by
// Data. The reserved header field is 0.
//
// Names that are not valid UTF-8, data longer than MaxReparseDataLength,
// non-zero Flags on a mount point, Data on a link, or names or Flags on
// another tag give a *FormatError.
func (rp *ReparsePoint) Encode() ([]byte, error) {
	if !rp.IsSymlinkOrMountPoint() {
		switch {
		case rp.SubstituteName != "" || rp.PrintName != "" || rp.Flags != 0:
			return nil, formatErr(reparseStructureName, ReparseHeaderSize, "names and flags apply only to symlink and mount point tags, not %#08x", rp.Tag)
		case len(rp.Data) > MaxReparseDataLength:
			return nil, formatErr(reparseStructureName, 4, "data is %d bytes, limit %d", len(rp.Data), MaxReparseDataLength)
		}
		b := make([]byte, 0, ReparseHeaderSize+len(rp.Data))
		b = appendReparseHeader(b, rp.Tag, len(rp.Data))
		return append(b, rp.Data...), nil
	}
	if len(rp.Data) != 0 {
		return nil, formatErr(reparseStructureName, ReparseHeaderSize, "Data must be empty for a symlink or mount point")
	}
	if rp.Tag == ReparseTagMountPoint && rp.Flags != 0 {
		return nil, formatErr(reparseStructureName, ReparseHeaderSize, "mount point buffers have no flags field (Flags %#x)", rp.Flags)
	}
	fixed := linkFixedSize(rp.Tag)
	subLen, err := utf16Len(rp.SubstituteName)
	if err != nil {
		return nil, &FormatError{Structure: reparseStructureName, Offset: int64(ReparseHeaderSize + fixed), Reason: "cannot encode substitute name", Err: err}
	}
	printLen, err := utf16Len(rp.PrintName)
	if err != nil {
		return nil, &FormatError{Structure: reparseStructureName, Offset: int64(ReparseHeaderSize + fixed + subLen + 2), Reason: "cannot encode print name", Err: err}
	}
	dataLen := fixed + subLen + 2 + printLen + 2
	if dataLen > MaxReparseDataLength {
		return nil, formatErr(reparseStructureName, 4, "names need %d bytes of data, limit %d", dataLen, MaxReparseDataLength)
	}
	b := make([]byte, 0, ReparseHeaderSize+dataLen)
	b = appendReparseHeader(b, rp.Tag, dataLen)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(subLen))
	b = binary.LittleEndian.AppendUint16(b, uint16(subLen+2))
	b = binary.LittleEndian.AppendUint16(b, uint16(printLen))
	if rp.Tag == ReparseTagSymlink {
		b = binary.LittleEndian.AppendUint32(b, rp.Flags)
	}
	b = appendUTF16(b, rp.SubstituteName)
	b = append(b, 0, 0)
	b = appendUTF16(b, rp.PrintName)
	b = append(b, 0, 0)
	return b, nil
}

func appendReparseHeader(b []byte, tag uint32, dataLen int) []byte {
	b = binary.LittleEndian.AppendUint32(b, tag)
	b = binary.LittleEndian.AppendUint16(b, uint16(dataLen))
	return binary.LittleEndian.AppendUint16(b, 0)
}

// NewLinkReparsePoint returns the symlink (or, when mountPoint is true, mount
// point) reparse point for target, following the rules go-winio uses when it
// restores a tar symlink:
//
//   - \\?\X becomes the substitute name \??\X;
//   - \\server\share... becomes \??\UNC\server\share...;
//   - a drive path C:... becomes \??\C:...;
//   - anything else is relative: it is kept as is and, for symlinks,
//     SymlinkFlagRelative is set.
//
// The print name is target verbatim. Callers converting tar link names must
// turn '/' into '\' first; this function does not change separators.
func NewLinkReparsePoint(target string, mountPoint bool) *ReparsePoint {
	rp := &ReparsePoint{Tag: ReparseTagSymlink, PrintName: target}
	if mountPoint {
		rp.Tag = ReparseTagMountPoint
	}
	switch {
	case strings.HasPrefix(target, `\\?\`):
		rp.SubstituteName = `\??\` + target[4:]
	case strings.HasPrefix(target, `\\`):
		rp.SubstituteName = `\??\UNC\` + target[2:]
	case len(target) >= 2 && isDriveLetter(target[0]) && target[1] == ':':
		rp.SubstituteName = `\??\` + target
	default:
		rp.SubstituteName = target
		if !mountPoint {
			rp.Flags = SymlinkFlagRelative
		}
	}
	return rp
}

func isDriveLetter(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
