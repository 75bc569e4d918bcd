package winfile

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// Symlink to C:\x, written out from the REPARSE_DATA_BUFFER table.
const goldenSymlink = `
0c0000a0 | 2800 | 0000
0000 | 1000 | 1200 | 0800 | 00000000
5c00 3f00 3f00 5c00 4300 3a00 5c00 7800 | 0000
4300 3a00 5c00 7800 | 0000`

// Junction to \??\D:\data with print name D:\data: no flags field.
const goldenMountPoint = `
030000a0 | 3000 | 0000
0000 | 1600 | 1800 | 0e00
5c00 3f00 3f00 5c00 4400 3a00 5c00 6400 6100 7400 6100 | 0000
4400 3a00 5c00 6400 6100 7400 6100 | 0000`

func TestReparseGolden(t *testing.T) {
	tests := []struct {
		name string
		wire string
		rp   ReparsePoint
	}{
		{"symlink", goldenSymlink, ReparsePoint{Tag: ReparseTagSymlink, SubstituteName: `\??\C:\x`, PrintName: `C:\x`}},
		{"mount point", goldenMountPoint, ReparsePoint{Tag: ReparseTagMountPoint, SubstituteName: `\??\D:\data`, PrintName: `D:\data`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := unhex(t, tt.wire)
			rp, err := DecodeReparsePoint(wire)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*rp, tt.rp) {
				t.Errorf("decoded %+v, want %+v", *rp, tt.rp)
			}
			got, err := tt.rp.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wire) {
				t.Errorf("encoded\n%x\nwant\n%x", got, wire)
			}
			if rp.Target() != tt.rp.PrintName || !rp.IsSymlinkOrMountPoint() {
				t.Errorf("Target() = %q, IsSymlinkOrMountPoint() = %v", rp.Target(), rp.IsSymlinkOrMountPoint())
			}
		})
	}
}

func TestNewLinkReparsePoint(t *testing.T) {
	tests := []struct {
		target string
		mount  bool
		sub    string
		flags  uint32
	}{
		{`C:\Windows`, false, `\??\C:\Windows`, 0},
		{`c:relative-to-drive`, false, `\??\c:relative-to-drive`, 0},
		{`\\?\C:\x`, false, `\??\C:\x`, 0},
		{`\\?\UNC\srv\share`, false, `\??\UNC\srv\share`, 0},
		{`\\server\share\dir`, false, `\??\UNC\server\share\dir`, 0},
		{`..\lib\x.dll`, false, `..\lib\x.dll`, SymlinkFlagRelative},
		{`x.dll`, false, `x.dll`, SymlinkFlagRelative},
		{`\rooted`, false, `\rooted`, SymlinkFlagRelative},
		{`1:\x`, false, `1:\x`, SymlinkFlagRelative},
		{``, false, ``, SymlinkFlagRelative},
		{`D:\data`, true, `\??\D:\data`, 0},
		{`relative`, true, `relative`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			rp := NewLinkReparsePoint(tt.target, tt.mount)
			wantTag := ReparseTagSymlink
			if tt.mount {
				wantTag = ReparseTagMountPoint
			}
			want := ReparsePoint{Tag: wantTag, SubstituteName: tt.sub, PrintName: tt.target, Flags: tt.flags}
			if !reflect.DeepEqual(*rp, want) {
				t.Fatalf("got %+v, want %+v", *rp, want)
			}
			b, err := rp.Encode()
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeReparsePoint(b)
			if err != nil || !reflect.DeepEqual(back, rp) {
				t.Errorf("round trip: %+v, %v", back, err)
			}
			if back.Target() != tt.target {
				t.Errorf("Target() = %q", back.Target())
			}
		})
	}
	// The relative flag lands in the Flags field of the wire form.
	b, _ := NewLinkReparsePoint("x", false).Encode()
	if !bytes.Equal(b[16:20], le32(SymlinkFlagRelative)) {
		t.Errorf("flags field = %x", b[16:20])
	}
}

func TestReparseOpaqueTags(t *testing.T) {
	// WCI placeholder as laid out by reference section 3.10.
	name := u16(`Windows\System32\x.dll`)
	wciData := cat(le32(1), le32(0), make([]byte, 16), le16(uint16(len(name)/2)), name)
	tests := []struct {
		name string
		tag  uint32
		data []byte
	}{
		{"WCI placeholder", ReparseTagWCI, wciData},
		{"WCI tombstone", ReparseTagWCITombstone, nil},
		{"WCI link", ReparseTagWCILink, []byte{1, 2, 3, 4}},
		{"third-party GUID buffer", 0x00001234, cat(make([]byte, 16), []byte("private"))},
		{"tag 0", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := cat(le32(tt.tag), le16(uint16(len(tt.data))), le16(0), tt.data)
			rp, err := DecodeReparsePoint(wire)
			if err != nil {
				t.Fatal(err)
			}
			if rp.Tag != tt.tag || !bytes.Equal(rp.Data, tt.data) || rp.IsSymlinkOrMountPoint() || rp.Target() != "" {
				t.Errorf("decoded %+v", rp)
			}
			b, err := rp.Encode()
			if err != nil || !bytes.Equal(b, wire) {
				t.Errorf("encoded %x, %v; want %x", b, err, wire)
			}
		})
	}
}

func TestDecodeReparseLenient(t *testing.T) {
	// Print name first, no NULs, non-zero reserved field, trailing bytes:
	// valid but not canonical.
	pr, sub := u16("t"), u16(`\??\C:\t`)
	data := cat(le16(uint16(len(pr))), le16(uint16(len(sub))), le16(0), le16(uint16(len(pr))), le32(0), pr, sub)
	wire := cat(le32(ReparseTagSymlink), le16(uint16(len(data))), le16(0xbeef), data, []byte("trailing"))
	rp, err := DecodeReparsePoint(wire)
	if err != nil {
		t.Fatal(err)
	}
	want := &ReparsePoint{Tag: ReparseTagSymlink, SubstituteName: `\??\C:\t`, PrintName: "t"}
	if !reflect.DeepEqual(rp, want) {
		t.Fatalf("decoded %+v, want %+v", rp, want)
	}
	canon, err := rp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeReparsePoint(canon)
	if err != nil || !reflect.DeepEqual(back, rp) {
		t.Errorf("canonical form decodes to %+v, %v", back, err)
	}
}

func TestDecodeReparseErrors(t *testing.T) {
	link := func(tag uint32, fields []uint16, path []byte) []byte {
		var data []byte
		for _, f := range fields {
			data = append(data, le16(f)...)
		}
		if tag == ReparseTagSymlink {
			data = append(data, le32(0)...)
		}
		data = append(data, path...)
		return cat(le32(tag), le16(uint16(len(data))), le16(0), data)
	}
	path := u16("abcd") // 8 bytes
	tests := []struct {
		name string
		b    []byte
		off  int64
		text string
	}{
		{"empty", nil, 0, "header needs 8 bytes, 0 remain"},
		{"short header", []byte{1, 2, 3, 4, 5, 6, 7}, 0, "header needs 8 bytes, 7 remain"},
		{"data length beyond buffer", cat(le32(ReparseTagWCI), le16(5), le16(0), []byte{1, 2}), 4, "ReparseDataLength 5 exceeds the 2 bytes"},
		{"symlink fields missing", cat(le32(ReparseTagSymlink), le16(8), le16(0), make([]byte, 8)), 8, "shorter than the 12-byte link fields"},
		{"mount point fields missing", cat(le32(ReparseTagMountPoint), le16(4), le16(0), make([]byte, 4)), 8, "shorter than the 8-byte link fields"},
		{"odd substitute offset", link(ReparseTagSymlink, []uint16{1, 2, 0, 2}, path), 8, "substitute name offset 1 or length 2 is odd"},
		{"odd print length", link(ReparseTagMountPoint, []uint16{0, 2, 2, 3}, path), 12, "print name offset 2 or length 3 is odd"},
		{"substitute beyond path", link(ReparseTagSymlink, []uint16{4, 6, 0, 2}, path), 8, "substitute name at 4+6 is outside the 8-byte path buffer"},
		{"print beyond path", link(ReparseTagMountPoint, []uint16{0, 2, 0xfffe, 2}, path), 12, "print name at 65534+2 is outside"},
		{"unpaired surrogate", link(ReparseTagSymlink, []uint16{0, 2, 2, 2}, cat(u16("a"), le16(0xdc00))), 22, "print name is not valid UTF-16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp, err := DecodeReparsePoint(tt.b)
			wantFormatError(t, err, tt.off, tt.text)
			if rp != nil {
				t.Errorf("got %+v with the error", rp)
			}
		})
	}
	// Every cut of a valid buffer fails cleanly.
	wire := unhex(t, goldenSymlink)
	for i := range len(wire) {
		if _, err := DecodeReparsePoint(wire[:i]); err == nil {
			t.Errorf("cut at %d: no error", i)
		}
	}
}

func TestReparseEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		rp   ReparsePoint
		text string
	}{
		{"mount point with flags", ReparsePoint{Tag: ReparseTagMountPoint, Flags: 1}, "no flags field"},
		{"symlink with data", ReparsePoint{Tag: ReparseTagSymlink, Data: []byte{1}}, "Data must be empty"},
		{"opaque tag with names", ReparsePoint{Tag: ReparseTagWCI, PrintName: "x"}, "names and flags apply only"},
		{"opaque tag with flags", ReparsePoint{Tag: ReparseTagWCI, Flags: 1}, "names and flags apply only"},
		{"opaque data too long", ReparsePoint{Tag: ReparseTagWCI, Data: make([]byte, 65536)}, "limit 65535"},
		{"names too long", ReparsePoint{Tag: ReparseTagSymlink, SubstituteName: strings.Repeat("x", 20000), PrintName: strings.Repeat("y", 12760)}, "names need 65536 bytes of data, limit 65535"},
		{"invalid UTF-8", ReparsePoint{Tag: ReparseTagSymlink, PrintName: "\xc0"}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.rp.Encode()
			wantFormatError(t, err, -1, tt.text)
		})
	}
	// The largest link that fits: link data lengths are even, so 65534.
	rp := ReparsePoint{Tag: ReparseTagSymlink, SubstituteName: strings.Repeat("x", 20000), PrintName: strings.Repeat("y", 12759)}
	b, err := rp.Encode()
	if err != nil || len(b) != 8+65534 {
		t.Errorf("largest link: %d bytes, %v", len(b), err)
	}
}
