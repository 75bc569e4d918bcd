package winfile

import (
	"encoding/binary"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

var (
	errOddLength         = errors.New("odd byte length")
	errUnpairedSurrogate = errors.New("unpaired UTF-16 surrogate")
	errInvalidUTF8       = errors.New("not valid UTF-8")
)

// decodeUTF16 converts UTF-16LE bytes to a UTF-8 string. Unlike
// unicode/utf16.Decode it rejects unpaired surrogates instead of replacing
// them, so that every accepted name re-encodes to the same bytes. On error it
// also returns the byte index of the bad code unit.
func decodeUTF16(b []byte) (string, int, error) {
	if len(b)%2 != 0 {
		return "", len(b) - 1, errOddLength
	}
	// Fast path for ASCII, the common case for stream and link names.
	ascii := true
	for i := 0; i < len(b); i += 2 {
		if b[i+1] != 0 || b[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		s := make([]byte, len(b)/2)
		for i := range s {
			s[i] = b[2*i]
		}
		return string(s), 0, nil
	}
	out := make([]byte, 0, len(b)/2*3)
	for i := 0; i < len(b); i += 2 {
		u := rune(binary.LittleEndian.Uint16(b[i:]))
		switch {
		case utf16.IsSurrogate(u):
			if u >= 0xdc00 || i+4 > len(b) {
				return "", i, errUnpairedSurrogate
			}
			u2 := rune(binary.LittleEndian.Uint16(b[i+2:]))
			r := utf16.DecodeRune(u, u2)
			if r == utf8.RuneError {
				return "", i, errUnpairedSurrogate
			}
			out = utf8.AppendRune(out, r)
			i += 2
		default:
			out = utf8.AppendRune(out, u)
		}
	}
	return string(out), 0, nil
}

// utf16Len returns the UTF-16 byte length of s, or an error when s is not
// valid UTF-8 (which also excludes encoded surrogate code points).
func utf16Len(s string) (int, error) {
	if !utf8.ValidString(s) {
		return 0, errInvalidUTF8
	}
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 4
		} else {
			n += 2
		}
	}
	return n, nil
}

// appendUTF16 appends s as UTF-16LE. s must be valid UTF-8.
func appendUTF16(dst []byte, s string) []byte {
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			dst = binary.LittleEndian.AppendUint16(dst, uint16(r1))
			dst = binary.LittleEndian.AppendUint16(dst, uint16(r2))
		} else {
			dst = binary.LittleEndian.AppendUint16(dst, uint16(r))
		}
	}
	return dst
}
