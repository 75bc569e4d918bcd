package hostcompute

import (
	"crypto/sha1"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

func TestNameToGuidWindowsOrder(t *testing.T) {
	for _, name := range []string{"", "layer", "Layer", "3f2c1e7a9b", "ünïcödé-层"} {
		got, err := NameToGuid(name)
		if err != nil {
			t.Fatalf("NameToGuid(%q): %v", name, err)
		}
		want := guid.NameToGuid(name)
		if got != GUID(want.ToWindowsArray()) {
			t.Errorf("NameToGuid(%q) = % x, want % x", name, got, want.ToWindowsArray())
		}
		if s := got.ToString(); s != want.String() {
			t.Errorf("NameToGuid(%q).ToString() = %s, want %s", name, s, want)
		}
	}
}

func TestNewGUID(t *testing.T) {
	tests := []struct {
		source string
		text   string // ToString of the result; "" to skip
	}{
		// SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d (FIPS 180 test vector).
		{"abc", "363e99a9-0647-6a81-ba3e-25717850c26c"},
		{"", ""},
		{"ünïcödé", ""},
	}
	for _, tt := range tests {
		sum := sha1.Sum([]byte(tt.source))
		var want GUID
		copy(want[:], sum[:16])
		got := NewGUID(tt.source)
		if *got != want {
			t.Errorf("NewGUID(%q) = % x, want % x", tt.source, *got, want)
		}
		if tt.text != "" && got.ToString() != tt.text {
			t.Errorf("NewGUID(%q).ToString() = %s, want %s", tt.source, got.ToString(), tt.text)
		}
	}
}

func TestGUIDToString(t *testing.T) {
	g := GUID{0x04, 0x03, 0x02, 0x01, 0x06, 0x05, 0x08, 0x07, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	if got, want := g.ToString(), "01020304-0506-0708-090a-0b0c0d0e0f10"; got != want {
		t.Errorf("ToString() = %s, want %s", got, want)
	}
	var zero GUID
	if got, want := zero.ToString(), "00000000-0000-0000-0000-000000000000"; got != want {
		t.Errorf("zero ToString() = %s, want %s", got, want)
	}
}
