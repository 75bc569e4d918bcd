package winfile

import (
	"bytes"
	"strings"
	"testing"
)

func equalEAs(a, b []ExtendedAttribute) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Flags != b[i].Flags || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func TestExtendedAttributesGolden(t *testing.T) {
	eas := []ExtendedAttribute{
		{Name: "TEST", Value: []byte("hi")},                                     // 8+4+1+2 = 15 -> 16
		{Name: "$KERNEL.PURGE.X", Value: []byte{1, 2, 3, 4}, Flags: FileNeedEA}, // 8+15+1+4 = 28
		{Name: "E", Value: nil},                                                 // 8+1+1 = 10 -> 12, last
	}
	want := unhex(t, `
		10000000 | 00 | 04 | 0200 | 54455354 00 | 6869 | 00
		1c000000 | 80 | 0f | 0400 | 244b45524e454c2e50555247452e58 00 | 01020304
		00000000 | 00 | 01 | 0000 | 45 00 | 0000`)
	got, err := EncodeExtendedAttributes(eas)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
	back, err := DecodeExtendedAttributes(want)
	if err != nil {
		t.Fatal(err)
	}
	if !equalEAs(back, eas) {
		t.Errorf("decoded %+v, want %+v", back, eas)
	}
	// The last entry may come without padding.
	back, err = DecodeExtendedAttributes(want[:len(want)-2])
	if err != nil || !equalEAs(back, eas) {
		t.Errorf("unpadded: %+v, %v", back, err)
	}
	// Decoded values do not alias the input.
	back, _ = DecodeExtendedAttributes(want)
	want[14] = 'X'
	if string(back[0].Value) != "hi" {
		t.Errorf("decoded value aliases input")
	}
}

func TestExtendedAttributesEmpty(t *testing.T) {
	b, err := EncodeExtendedAttributes(nil)
	if err != nil || len(b) != 0 {
		t.Errorf("Encode(nil) = %x, %v", b, err)
	}
	eas, err := DecodeExtendedAttributes(nil)
	if err != nil || len(eas) != 0 {
		t.Errorf("Decode(nil) = %v, %v", eas, err)
	}
}

func TestExtendedAttributesLimits(t *testing.T) {
	eas := []ExtendedAttribute{{Name: strings.Repeat("N", 255), Value: bytes.Repeat([]byte{9}, 65535)}}
	b, err := EncodeExtendedAttributes(eas)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != (8+255+1+65535+3)&^3 {
		t.Errorf("encoded %d bytes", len(b))
	}
	back, err := DecodeExtendedAttributes(b)
	if err != nil || !equalEAs(back, eas) {
		t.Errorf("round trip of largest EA failed: %v", err)
	}
}

func TestEncodeExtendedAttributesErrors(t *testing.T) {
	tests := []struct {
		name string
		eas  []ExtendedAttribute
		off  int64
		text string
	}{
		{"empty name", []ExtendedAttribute{{Name: ""}}, 0, "EA 0: empty name"},
		{"long name", []ExtendedAttribute{{Name: "A"}, {Name: strings.Repeat("x", 256)}}, 12, "EA 1: name is 256 bytes, limit 255"},
		{"NUL in name", []ExtendedAttribute{{Name: "a\x00b"}}, 0, "NUL in name"},
		{"long value", []ExtendedAttribute{{Name: "V", Value: make([]byte, 65536)}}, 0, "value is 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EncodeExtendedAttributes(tt.eas)
			wantFormatError(t, err, tt.off, tt.text)
		})
	}
}

func TestDecodeExtendedAttributesErrors(t *testing.T) {
	entry := func(next uint32, flags, nameLen uint8, valueLen uint16, rest ...[]byte) []byte {
		return cat(le32(next), []byte{flags, nameLen}, le16(valueLen), cat(rest...))
	}
	good := entry(12, 0, 1, 1, []byte("a\x00v"), []byte{0}) // 12 bytes, padded
	tests := []struct {
		name string
		b    []byte
		off  int64
		text string
	}{
		{"short header", []byte{0, 0, 0}, 0, "entry header needs 8 bytes, 3 remain"},
		{"short header after entry", cat(good, []byte{0, 0, 0, 0}), 12, "entry header needs 8 bytes"},
		{"value beyond buffer", entry(0, 0, 1, 10, []byte("a\x00vvv")), 0, "entry needs 20 bytes, 13 remain"},
		{"name beyond buffer", entry(0, 0, 200, 0, []byte("abc")), 0, "entry needs 209 bytes"},
		{"missing terminator", entry(0, 0, 1, 1, []byte("abv")), 9, "not NUL-terminated"},
		{"empty name", entry(0, 0, 0, 1, []byte("\x00v")), 0, "empty name"},
		{"NUL in name", entry(0, 0, 3, 0, []byte("a\x00b\x00")), 8, "NUL in name"},
		{"next inside entry", entry(8, 0, 1, 1, []byte("a\x00v"), make([]byte, 20)), 0, "does not advance past the 11-byte entry"},
		{"next beyond buffer", entry(16, 0, 1, 1, []byte("a\x00v"), []byte{0}), 0, "runs beyond the 12-byte buffer"},
		{"next at end of buffer", entry(12, 0, 1, 1, []byte("a\x00v"), []byte{0}), 0, "runs beyond"},
		{"huge next", entry(0xffffffff, 0, 1, 1, []byte("a\x00v"), []byte{0}), 0, "runs beyond"},
		{"error in second entry", cat(good, entry(0, 0, 0, 0, []byte{0})), 12, "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eas, err := DecodeExtendedAttributes(tt.b)
			wantFormatError(t, err, tt.off, tt.text)
			if eas != nil {
				t.Errorf("got EAs %v with the error", eas)
			}
		})
	}
	// An unaligned but in-range NextEntryOffset is accepted.
	b := cat(entry(11, 0, 1, 1, []byte("a\x00v")), entry(0, 0, 1, 0, []byte("b\x00")))
	eas, err := DecodeExtendedAttributes(b)
	if err != nil || len(eas) != 2 || eas[1].Name != "b" {
		t.Errorf("unaligned chain: %+v, %v", eas, err)
	}
}

func TestDecodeExtendedAttributesTruncation(t *testing.T) {
	b, err := EncodeExtendedAttributes([]ExtendedAttribute{{Name: "one", Value: []byte("1")}, {Name: "two", Value: []byte("22")}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(b); i++ {
		_, err := DecodeExtendedAttributes(b[:i])
		// Cutting the padding of the last entry is allowed.
		if i >= len(b)-2 {
			if err != nil {
				t.Errorf("cut at %d: %v", i, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("cut at %d: no error", i)
		}
	}
}
