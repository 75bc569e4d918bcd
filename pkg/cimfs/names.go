package cimfs

import (
	"encoding/binary"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// upcaseTable is the table this package writes: entry c is the simple upper-case
// mapping of BMP code unit c when that mapping stays in the BMP, else c itself.
// Surrogate code units map to themselves. Readers use the table stored in the image.
func upcaseTable() []uint16 {
	t := make([]uint16, upcaseEntries)
	for c := range t {
		t[c] = uint16(c)
		if c >= 0xD800 && c < 0xE000 {
			continue
		}
		if u := unicode.ToUpper(rune(c)); u < 0x10000 && u >= 0 {
			t[c] = uint16(u)
		}
	}
	return t
}

func encodeUpcase(t []uint16) []byte {
	b := make([]byte, upcaseSize)
	for i, v := range t {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// nameKey returns the comparison key of a name (§10.3): each BMP code point upcased
// through t, supplementary code points kept as they are.
func nameKey(t []uint16, name string) []rune {
	k := make([]rune, 0, len(name))
	for _, r := range name {
		if r < 0x10000 {
			r = rune(t[r])
		}
		k = append(k, r)
	}
	return k
}

func compareKeys(a, b []rune) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// compareStored compares a wanted name's key with a stored UTF-16LE name, as a
// lookup does: a broken surrogate pair in the stored name makes the wanted name
// compare greater.
func compareStored(t []uint16, key []rune, stored []byte) int {
	n := len(stored) / 2
	j := 0
	for i := 0; ; i++ {
		if i == len(key) {
			if j < n {
				return -1
			}
			return 0
		}
		if j >= n {
			return 1
		}
		u := binary.LittleEndian.Uint16(stored[2*j:])
		j++
		var c rune
		if utf16.IsSurrogate(rune(u)) {
			if u >= 0xDC00 || j >= n {
				return 1
			}
			u2 := binary.LittleEndian.Uint16(stored[2*j:])
			j++
			c = utf16.DecodeRune(rune(u), rune(u2))
			if c == utf8.RuneError {
				return 1
			}
		} else {
			c = rune(t[u])
		}
		if key[i] != c {
			if key[i] < c {
				return -1
			}
			return 1
		}
	}
}

// checkName validates one path component for storing: non-empty, valid Unicode,
// at most 255 UTF-16 units, no separators, colons or NUL, not "." or "..".
func checkName(name string) error {
	if name == "" || name == "." || name == ".." {
		return ErrInvalidName
	}
	if !utf8.ValidString(name) || strings.ContainsAny(name, "\\/:\x00") {
		return ErrInvalidName
	}
	if utf16Len(name) > maxNameUnits {
		return ErrInvalidName
	}
	return nil
}

// checkStreamName validates an alternate stream name (no colon, no separators).
func checkStreamName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "\\/:\x00") || utf16Len(name) > maxNameUnits {
		return ErrInvalidName
	}
	return nil
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// appendUTF16 appends s as UTF-16LE.
func appendUTF16(b []byte, s string) []byte {
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = binary.LittleEndian.AppendUint16(b, uint16(r1))
			b = binary.LittleEndian.AppendUint16(b, uint16(r2))
		} else {
			b = binary.LittleEndian.AppendUint16(b, uint16(r))
		}
	}
	return b
}

// decodeUTF16 decodes UTF-16LE; unpaired surrogates become U+FFFD (Verify reports
// them).
func decodeUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

func validUTF16(b []byte) bool {
	for i := 0; i+1 < len(b); i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		switch {
		case u >= 0xD800 && u < 0xDC00:
			if i+3 >= len(b) {
				return false
			}
			u2 := binary.LittleEndian.Uint16(b[i+2:])
			if u2 < 0xDC00 || u2 >= 0xE000 {
				return false
			}
			i += 2
		case u >= 0xDC00 && u < 0xE000:
			return false
		}
	}
	return true
}

// splitPath splits a path on both separators, dropping empty components.
func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' })
}
