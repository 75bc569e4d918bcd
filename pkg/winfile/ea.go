package winfile

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// ExtendedAttribute is one entry of a FILE_FULL_EA_INFORMATION chain.
type ExtendedAttribute struct {
	// Name is the EA name, 1 to 255 bytes of 8-bit characters without NUL.
	// Windows compares EA names case-insensitively.
	Name string
	// Value is the EA value, at most 65535 bytes.
	Value []byte
	// Flags holds FILE_NEED_EA (0x80) or 0.
	Flags uint8
}

// FileNeedEA is the ExtendedAttribute flag that marks an EA the file cannot be
// interpreted without.
const FileNeedEA = 0x80

const (
	eaHeaderSize    = 8
	maxEANameLen    = 255
	maxEAValueLen   = 65535
	eaEntryAlign    = 4
	eaStructureName = "extended attribute"
)

// DecodeExtendedAttributes decodes a FILE_FULL_EA_INFORMATION chain, the
// payload of a StreamEAData stream. An empty buffer holds no EAs.
//
// Each entry must lie inside b: its 8-byte header, its name with the NUL
// terminator, and its value. A non-zero NextEntryOffset must point past the
// end of the entry's value and stay inside b; a chain that ends without a
// zero NextEntryOffset is truncated. Names must be non-empty and contain no
// NUL. The last entry may be unpadded, and bytes after it are ignored.
// Violations give a *FormatError with the offset of the entry or field.
//
// The returned values do not alias b.
func DecodeExtendedAttributes(b []byte) ([]ExtendedAttribute, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var eas []ExtendedAttribute
	for off := 0; ; {
		if len(b)-off < eaHeaderSize {
			return nil, truncErr(eaStructureName, int64(off), "entry header", eaHeaderSize, len(b)-off)
		}
		next := binary.LittleEndian.Uint32(b[off:])
		flags := b[off+4]
		nameLen := int(b[off+5])
		valueLen := int(binary.LittleEndian.Uint16(b[off+6:]))
		nameStart := off + eaHeaderSize
		valueStart := nameStart + nameLen + 1
		end := valueStart + valueLen
		if end > len(b) {
			return nil, truncErr(eaStructureName, int64(off), "entry", end-off, len(b)-off)
		}
		name := b[nameStart : nameStart+nameLen]
		switch {
		case nameLen == 0:
			return nil, formatErr(eaStructureName, int64(off), "empty name")
		case b[valueStart-1] != 0:
			return nil, formatErr(eaStructureName, int64(valueStart-1), "name not NUL-terminated")
		case bytes.IndexByte(name, 0) >= 0:
			return nil, formatErr(eaStructureName, int64(nameStart), "NUL in name")
		}
		eas = append(eas, ExtendedAttribute{
			Name:  string(name),
			Value: append([]byte{}, b[valueStart:end]...),
			Flags: flags,
		})
		if next == 0 {
			return eas, nil
		}
		if uint64(next) < uint64(end-off) {
			return nil, formatErr(eaStructureName, int64(off), "NextEntryOffset %d does not advance past the %d-byte entry", next, end-off)
		}
		if uint64(next) >= uint64(len(b)-off) {
			return nil, formatErr(eaStructureName, int64(off), "NextEntryOffset %d runs beyond the %d-byte buffer", next, len(b))
		}
		off += int(next)
	}
}

// truncErr reports a structure that needs want bytes where only have remain.
func truncErr(what string, off int64, part string, want, have int) *FormatError {
	return formatErr(what, off, "%s needs %d bytes, %d remain", part, want, have)
}

// EncodeExtendedAttributes encodes eas as a FILE_FULL_EA_INFORMATION chain in
// the given order. Every entry, the last included, is padded with zeros to a
// multiple of 4 bytes, and NextEntryOffset of the last entry is 0. An empty
// name, a name longer than 255 bytes or containing NUL, or a value longer
// than 65535 bytes gives a *FormatError whose Offset is where the entry would
// start in the output. No input returns nil.
func EncodeExtendedAttributes(eas []ExtendedAttribute) ([]byte, error) {
	total := 0
	for i, ea := range eas {
		switch {
		case ea.Name == "":
			return nil, formatErr(eaStructureName, int64(total), "EA %d: empty name", i)
		case len(ea.Name) > maxEANameLen:
			return nil, formatErr(eaStructureName, int64(total), "EA %d: name is %d bytes, limit %d", i, len(ea.Name), maxEANameLen)
		case strings.IndexByte(ea.Name, 0) >= 0:
			return nil, formatErr(eaStructureName, int64(total), "EA %d: NUL in name", i)
		case len(ea.Value) > maxEAValueLen:
			return nil, formatErr(eaStructureName, int64(total), "EA %q: value is %d bytes, limit %d", ea.Name, len(ea.Value), maxEAValueLen)
		}
		total += eaEntrySize(ea)
	}
	if len(eas) == 0 {
		return nil, nil
	}
	b := make([]byte, 0, total)
	for i, ea := range eas {
		size := eaEntrySize(ea)
		next := uint32(size)
		if i == len(eas)-1 {
			next = 0
		}
		start := len(b)
		b = binary.LittleEndian.AppendUint32(b, next)
		b = append(b, ea.Flags, uint8(len(ea.Name)))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(ea.Value)))
		b = append(b, ea.Name...)
		b = append(b, 0)
		b = append(b, ea.Value...)
		for len(b)-start < size {
			b = append(b, 0)
		}
	}
	return b, nil
}

// eaEntrySize is the padded size of ea's entry.
func eaEntrySize(ea ExtendedAttribute) int {
	n := eaHeaderSize + len(ea.Name) + 1 + len(ea.Value)
	return (n + eaEntryAlign - 1) &^ (eaEntryAlign - 1)
}
