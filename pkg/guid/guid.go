// Package guid implements the 128-bit globally unique identifiers used by the
// Windows storage formats that hostcompute reads and writes.
//
// A GUID is kept as its four conventional fields (Data1, Data2, Data3, Data4),
// which is also how Windows stores it in memory. The same value has two binary
// encodings:
//
//   - RFC 4122 ("big-endian") order, used as hashing input and output
//     ([FromArray], [GUID.ToArray]);
//   - Windows ("mixed-endian") order, used by every Windows binary structure
//     such as CIM region IDs, layer descriptors and WCI reparse buffers
//     ([FromWindowsArray], [GUID.ToWindowsArray]).
//
// For GUID 01020304-0506-0708-090a-0b0c0d0e0f10 the RFC 4122 bytes are
// 01 02 … 10 in order, and the Windows bytes are
// 04 03 02 01 06 05 08 07 09 0a 0b 0c 0d 0e 0f 10.
//
// The text form is 36 characters, 8-4-4-4-12 hexadecimal digits without
// braces. [GUID.String] writes lower case; [FromString] accepts either case.
// Surfaces that wrap GUIDs in braces (volume paths, BCD identifiers) must strip
// them before parsing. GUID implements [encoding.TextMarshaler], so it appears
// in JSON as that string.
//
// [NewV4] makes random GUIDs, [NewV5] name-based ones, and [NameToGuid] derives
// the deterministic layer IDs used by the wclayer compatibility API.
package guid

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
)

// GUID is a 128-bit identifier split into the conventional Windows fields.
// The zero value is the nil GUID 00000000-0000-0000-0000-000000000000.
type GUID struct {
	Data1 uint32
	Data2 uint16
	Data3 uint16
	Data4 [8]byte
}

// Variant is the layout family a GUID belongs to, read from the top bits of
// Data4[0] (RFC 4122 section 4.1.1).
type Variant uint8

// Variants, in the order of RFC 4122's table.
const (
	// VariantUnknown is never returned by [GUID.Variant]; it is the zero value
	// of Variant.
	VariantUnknown Variant = iota
	// VariantNCS is bit pattern 0xx, reserved for NCS backward compatibility.
	VariantNCS
	// VariantRFC4122 is bit pattern 10x, the layout of version 1-8 UUIDs.
	VariantRFC4122
	// VariantMicrosoft is bit pattern 110, reserved for Microsoft backward
	// compatibility.
	VariantMicrosoft
	// VariantFuture is bit pattern 111, reserved for future definition.
	VariantFuture
)

// String returns a short name for the variant.
func (v Variant) String() string {
	switch v {
	case VariantNCS:
		return "NCS"
	case VariantRFC4122:
		return "RFC4122"
	case VariantMicrosoft:
		return "Microsoft"
	case VariantFuture:
		return "Future"
	default:
		return "Unknown"
	}
}

// ErrInvalid is the class of every error returned for text that is not a GUID.
// [FromString] and [GUID.UnmarshalText] return a *[ParseError], which matches
// ErrInvalid with [errors.Is].
var ErrInvalid = errors.New("guid: invalid GUID string")

// ParseError reports text that is not a GUID in the 8-4-4-4-12 form.
type ParseError struct {
	// Input is the text that failed to parse.
	Input string
}

// Error describes the input and what is wrong with it.
func (e *ParseError) Error() string {
	in := e.Input
	const maxShown = 64
	if len(in) > maxShown {
		in = in[:maxShown] + "..."
	}
	return fmt.Sprintf("guid: invalid GUID string %q: %s", in, parseProblem(e.Input))
}

// Unwrap returns [ErrInvalid].
func (e *ParseError) Unwrap() error { return ErrInvalid }

// stringLen is the length of the text form.
const stringLen = 36

// dashAt reports whether index i of the text form holds a dash.
func dashAt(i int) bool { return i == 8 || i == 13 || i == 18 || i == 23 }

// parseProblem explains why s is not a GUID string. It is only called for
// input that FromString rejected.
func parseProblem(s string) string {
	if len(s) != stringLen {
		if len(s) == stringLen+2 && s[0] == '{' && s[len(s)-1] == '}' {
			return "braces are not accepted"
		}
		return fmt.Sprintf("length %d, want %d", len(s), stringLen)
	}
	for i := 0; i < len(s); i++ {
		if dashAt(i) {
			if s[i] != '-' {
				return fmt.Sprintf("want '-' at index %d", i)
			}
			continue
		}
		if _, ok := fromHex(s[i]); !ok {
			return fmt.Sprintf("non-hex character %q at index %d", s[i], i)
		}
	}
	return "malformed"
}

// NewV4 returns a random (version 4, RFC 4122 variant) GUID read from
// crypto/rand.
func NewV4() (GUID, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return GUID{}, fmt.Errorf("guid: reading random bytes: %w", err)
	}
	g := FromArray(b)
	g.setVersion(4)
	g.setRFC4122Variant()
	return g, nil
}

// NewV5 returns the name-based (version 5, SHA-1) GUID for name in the given
// namespace. The hash input is the namespace in RFC 4122 byte order followed by
// the raw bytes of name, with no normalisation, terminator or case folding.
// The first 16 bytes of the digest are read in RFC 4122 order, then the version
// and variant bits are set. This is the RFC 4122 algorithm and gives the same
// results as go-winio's NewV5.
func NewV5(namespace GUID, name []byte) GUID {
	h := sha1.New()
	ns := namespace.ToArray()
	h.Write(ns[:])
	h.Write(name)
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	var b [16]byte
	copy(b[:], sum[:16])
	g := FromArray(b)
	g.setVersion(5)
	g.setRFC4122Variant()
	return g
}

func (g *GUID) setVersion(v uint16) {
	g.Data3 = g.Data3&0x0fff | v<<12
}

func (g *GUID) setRFC4122Variant() {
	g.Data4[0] = g.Data4[0]&0x3f | 0x80
}

// FromString parses the 36-character form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
// with hexadecimal digits of either case. Braces, surrounding spaces and other
// lengths are rejected with a *[ParseError], which matches [ErrInvalid].
func FromString(s string) (GUID, error) {
	var b [16]byte
	if len(s) != stringLen {
		return GUID{}, &ParseError{Input: s}
	}
	j := 0
	for i := 0; i < stringLen; {
		if dashAt(i) {
			if s[i] != '-' {
				return GUID{}, &ParseError{Input: s}
			}
			i++
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return GUID{}, &ParseError{Input: s}
		}
		b[j] = hi<<4 | lo
		j++
		i += 2
	}
	return FromArray(b), nil
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// String returns the lower-case 8-4-4-4-12 form without braces.
func (g GUID) String() string {
	return string(g.appendText(make([]byte, 0, stringLen)))
}

const hexDigits = "0123456789abcdef"

func (g GUID) appendText(dst []byte) []byte {
	b := g.ToArray()
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// FromArray builds a GUID from its 16 bytes in RFC 4122 (big-endian) order.
func FromArray(b [16]byte) GUID {
	var g GUID
	g.Data1 = binary.BigEndian.Uint32(b[0:4])
	g.Data2 = binary.BigEndian.Uint16(b[4:6])
	g.Data3 = binary.BigEndian.Uint16(b[6:8])
	copy(g.Data4[:], b[8:16])
	return g
}

// ToArray returns the 16 bytes of g in RFC 4122 (big-endian) order.
func (g GUID) ToArray() [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:4], g.Data1)
	binary.BigEndian.PutUint16(b[4:6], g.Data2)
	binary.BigEndian.PutUint16(b[6:8], g.Data3)
	copy(b[8:16], g.Data4[:])
	return b
}

// FromWindowsArray builds a GUID from its 16 bytes in Windows (mixed-endian)
// order: Data1, Data2 and Data3 little-endian, Data4 as is.
func FromWindowsArray(b [16]byte) GUID {
	var g GUID
	g.Data1 = binary.LittleEndian.Uint32(b[0:4])
	g.Data2 = binary.LittleEndian.Uint16(b[4:6])
	g.Data3 = binary.LittleEndian.Uint16(b[6:8])
	copy(g.Data4[:], b[8:16])
	return g
}

// ToWindowsArray returns the 16 bytes of g in Windows (mixed-endian) order, the
// layout of a GUID inside Windows binary structures.
func (g GUID) ToWindowsArray() [16]byte {
	var b [16]byte
	binary.LittleEndian.PutUint32(b[0:4], g.Data1)
	binary.LittleEndian.PutUint16(b[4:6], g.Data2)
	binary.LittleEndian.PutUint16(b[6:8], g.Data3)
	copy(b[8:16], g.Data4[:])
	return b
}

// Version returns the RFC 4122 version number, the top four bits of Data3
// (4 for random, 5 for SHA-1 name-based). It is meaningful only when
// [GUID.Variant] is [VariantRFC4122].
func (g GUID) Version() uint8 {
	return uint8(g.Data3 >> 12)
}

// Variant returns the layout family given by the top bits of Data4[0].
func (g GUID) Variant() Variant {
	b := g.Data4[0]
	switch {
	case b&0x80 == 0:
		return VariantNCS
	case b&0xc0 == 0x80:
		return VariantRFC4122
	case b&0xe0 == 0xc0:
		return VariantMicrosoft
	default:
		return VariantFuture
	}
}

// IsZero reports whether g is the nil GUID.
func (g GUID) IsZero() bool {
	return g == GUID{}
}

var (
	_ fmt.Stringer             = GUID{}
	_ encoding.TextMarshaler   = GUID{}
	_ encoding.TextAppender    = GUID{}
	_ encoding.TextUnmarshaler = (*GUID)(nil)
)

// MarshalText returns the [GUID.String] form.
func (g GUID) MarshalText() ([]byte, error) {
	return g.appendText(make([]byte, 0, stringLen)), nil
}

// AppendText appends the [GUID.String] form to b.
func (g GUID) AppendText(b []byte) ([]byte, error) {
	return g.appendText(b), nil
}

// UnmarshalText parses text as [FromString] does. On error g is unchanged.
func (g *GUID) UnmarshalText(text []byte) error {
	v, err := FromString(string(text))
	if err != nil {
		return err
	}
	*g = v
	return nil
}
