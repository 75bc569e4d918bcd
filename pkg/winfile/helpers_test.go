package winfile

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unicode/utf16"
)

// unhex decodes hexadecimal text, ignoring spaces, newlines and '|'
// separators used to annotate field boundaries.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// u16 returns s as UTF-16LE bytes, using the standard library encoder as an
// independent oracle for the package's own encoder.
func u16(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// rawStream builds a backup stream by hand from its wire fields.
func rawStream(id uint32, attrs uint32, wireSize uint64, name string, rest ...[]byte) []byte {
	n := u16(name)
	return cat(le32(id), le32(attrs), le64(wireSize), le32(uint32(len(n))), n, cat(rest...))
}

// wantFormatError checks that err is a *FormatError of the ErrInvalidFormat
// class, at the given offset (when off >= 0) and mentioning the given text.
func wantFormatError(t *testing.T, err error, off int64, text string) *FormatError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a format error mentioning %q", text)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if !errors.Is(err, ErrInvalidFormat) {
		t.Errorf("errors.Is(%v, ErrInvalidFormat) = false", err)
	}
	if off >= 0 && fe.Offset != off {
		t.Errorf("error %q: offset %d, want %d", err, fe.Offset, off)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("error %q does not mention %q", err, text)
	}
	return fe
}

// allocatedBytes returns the average number of bytes f allocates.
func allocatedBytes(f func()) uint64 {
	const runs = 20
	f()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}
