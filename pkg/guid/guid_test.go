package guid

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) GUID {
	t.Helper()
	g, err := FromString(s)
	if err != nil {
		t.Fatalf("FromString(%q): %v", s, err)
	}
	return g
}

// TestNewV5Vectors checks the test vectors of reference section 1.4.
func TestNewV5Vectors(t *testing.T) {
	tests := []struct {
		name      string
		namespace string
		input     string
		want      string
	}{
		{"rfc dns namespace", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com", "2ed6657d-e927-568b-95e1-2665a8aea6a2"},
		{"cim mount namespace", "6827367b-c388-4e9b-961c-6d2c936c0000", "mycontainer", "cf35732a-3ee7-5923-86c6-8e4098d3a1cd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewV5(mustParse(t, tt.namespace), []byte(tt.input))
			if got.String() != tt.want {
				t.Errorf("NewV5(%s, %q) = %s, want %s", tt.namespace, tt.input, got, tt.want)
			}
			if got.Version() != 5 || got.Variant() != VariantRFC4122 {
				t.Errorf("version/variant = %d/%v, want 5/RFC4122", got.Version(), got.Variant())
			}
		})
	}
}

// TestByteOrder checks the worked example of reference section 1.1.
func TestByteOrder(t *testing.T) {
	g := mustParse(t, "01020304-0506-0708-090a-0b0c0d0e0f10")
	want := GUID{Data1: 0x01020304, Data2: 0x0506, Data3: 0x0708, Data4: [8]byte{9, 10, 11, 12, 13, 14, 15, 16}}
	if g != want {
		t.Fatalf("fields = %#v, want %#v", g, want)
	}
	be := [16]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	win := [16]byte{0x04, 0x03, 0x02, 0x01, 0x06, 0x05, 0x08, 0x07, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	if got := g.ToArray(); got != be {
		t.Errorf("ToArray = % x, want % x", got, be)
	}
	if got := g.ToWindowsArray(); got != win {
		t.Errorf("ToWindowsArray = % x, want % x", got, win)
	}
	if got := FromArray(be); got != g {
		t.Errorf("FromArray = %s, want %s", got, g)
	}
	if got := FromWindowsArray(win); got != g {
		t.Errorf("FromWindowsArray = %s, want %s", got, g)
	}
}

func TestStringRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"lower", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{"upper", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{"mixed", "6Ba7b810-9dAd-11d1-80b4-00c04Fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{"nil", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"},
		{"max", "ffffffff-ffff-ffff-ffff-ffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustParse(t, tt.in)
			if got := g.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if again := mustParse(t, g.String()); again != g {
				t.Errorf("reparse = %v, want %v", again, g)
			}
		})
	}
}

func TestFromStringErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		why  string
	}{
		{"empty", "", "length 0"},
		{"braces", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", "braces"},
		{"too short", "6ba7b810-9dad-11d1-80b4-00c04fd430c", "length 35"},
		{"too long", "6ba7b810-9dad-11d1-80b4-00c04fd430c80", "length 37"},
		{"no dashes", "6ba7b8109dad11d180b400c04fd430c8", "length 32"},
		{"bad hex", "6ba7b810-9dad-11d1-80b4-00c04fd430cg", "non-hex"},
		{"dash moved", "6ba7b81-09dad-11d1-80b4-00c04fd430c8", "non-hex character '-' at index 7"},
		{"dash in hex", "6ba7b810-9dad-11d1-80b4-00c04fd430-8", "non-hex"},
		{"plus sign", "+ba7b810-9dad-11d1-80b4-00c04fd430c8", "non-hex"},
		{"spaces", " 6ba7b810-9dad-11d1-80b4-00c04fd430c8", "length 37"},
		{"urn", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", "length 45"},
		{"non ascii", "6ba7b810-9dad-11d1-80b4-00c04fd430ä", "non-hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromString(tt.in)
			if err == nil {
				t.Fatalf("FromString(%q) succeeded", tt.in)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Input != tt.in {
				t.Errorf("error %#v is not a *ParseError with the input", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q does not mention %q", err, tt.why)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	type doc struct {
		VolumeGUID GUID
	}
	d := doc{VolumeGUID: mustParse(t, "cf35732a-3ee7-5923-86c6-8e4098d3a1cd")}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"VolumeGUID":"cf35732a-3ee7-5923-86c6-8e4098d3a1cd"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var back doc
	if err := json.Unmarshal([]byte(`{"VolumeGUID":"CF35732A-3EE7-5923-86C6-8E4098D3A1CD"}`), &back); err != nil {
		t.Fatal(err)
	}
	if back != d {
		t.Errorf("unmarshal = %v, want %v", back, d)
	}
	err = json.Unmarshal([]byte(`{"VolumeGUID":"{cf35732a-3ee7-5923-86c6-8e4098d3a1cd}"}`), &back)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("unmarshal of braced GUID: err = %v, want ErrInvalid", err)
	}
	if back != d {
		t.Errorf("failed unmarshal changed value to %v", back)
	}
}

func TestNewV4(t *testing.T) {
	seen := make(map[GUID]bool)
	for range 100 {
		g, err := NewV4()
		if err != nil {
			t.Fatal(err)
		}
		if g.Version() != 4 {
			t.Errorf("%s: version %d, want 4", g, g.Version())
		}
		if g.Variant() != VariantRFC4122 {
			t.Errorf("%s: variant %v, want RFC4122", g, g.Variant())
		}
		if seen[g] {
			t.Errorf("duplicate random GUID %s", g)
		}
		seen[g] = true
	}
}

func TestVariant(t *testing.T) {
	tests := []struct {
		b    byte
		want Variant
	}{
		{0x00, VariantNCS}, {0x7f, VariantNCS},
		{0x80, VariantRFC4122}, {0xbf, VariantRFC4122},
		{0xc0, VariantMicrosoft}, {0xdf, VariantMicrosoft},
		{0xe0, VariantFuture}, {0xff, VariantFuture},
	}
	for _, tt := range tests {
		g := GUID{Data4: [8]byte{tt.b}}
		if got := g.Variant(); got != tt.want {
			t.Errorf("Data4[0]=%#x: Variant() = %v, want %v", tt.b, got, tt.want)
		}
	}
}

func TestIsZero(t *testing.T) {
	if !(GUID{}).IsZero() {
		t.Error("zero GUID: IsZero() = false")
	}
	if (GUID{Data4: [8]byte{7: 1}}).IsZero() {
		t.Error("non-zero GUID: IsZero() = true")
	}
}

func TestLayerNamespace(t *testing.T) {
	if got := NewV5(NamespaceDNS, []byte("layers.hostcompute.dev")); got != LayerNamespace {
		t.Errorf("NewV5(dns, layers.hostcompute.dev) = %s, LayerNamespace = %s", got, LayerNamespace)
	}
	if NamespaceDNS.String() != "6ba7b810-9dad-11d1-80b4-00c04fd430c8" {
		t.Errorf("NamespaceDNS = %s", NamespaceDNS)
	}
}

func TestNameToGuid(t *testing.T) {
	// Golden values, cross-checked with Python's uuid.uuid5. Changing them
	// changes every stored layer ID.
	tests := []struct {
		name string
		want string
	}{
		{"5", "64f73097-2637-51d4-94d8-d877d7db84e7"},
		{"", "c27d2882-80c1-5ca0-b83d-89ef68a7169f"},
		{"7d5d8a1c0e3b4f2a", "dca174d5-16f3-5df9-bc10-a6be9d7dac9c"},
	}
	for _, tt := range tests {
		a, b := NameToGuid(tt.name), NameToGuid(tt.name)
		if a != b {
			t.Errorf("NameToGuid(%q) not deterministic: %s vs %s", tt.name, a, b)
		}
		if a.String() != tt.want {
			t.Errorf("NameToGuid(%q) = %s, want %s", tt.name, a, tt.want)
		}
		if a.Version() != 5 || a.Variant() != VariantRFC4122 {
			t.Errorf("NameToGuid(%q) version/variant = %d/%v", tt.name, a.Version(), a.Variant())
		}
	}
	if NameToGuid("Layer") == NameToGuid("layer") {
		t.Error("NameToGuid folds case")
	}
	if NameToGuid("a") == NameToGuid("b") {
		t.Error("NameToGuid(a) == NameToGuid(b)")
	}
}

func FuzzFromString(f *testing.F) {
	for _, s := range []string{
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
		"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
		"00000000-0000-0000-0000-000000000000",
		"6ba7b810-9dad-11d1-80b4-00c04fd430cg",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := FromString(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("FromString(%q): error %v is not ErrInvalid", s, err)
			}
			_ = err.Error()
			return
		}
		out := g.String()
		if !strings.EqualFold(out, s) {
			t.Fatalf("FromString(%q).String() = %q", s, out)
		}
		if again, err := FromString(out); err != nil || again != g {
			t.Fatalf("reparse of %q = %v, %v", out, again, err)
		}
		if FromArray(g.ToArray()) != g || FromWindowsArray(g.ToWindowsArray()) != g {
			t.Fatalf("array round trip of %s failed", g)
		}
	})
}
