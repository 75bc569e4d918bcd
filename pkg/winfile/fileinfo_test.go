package winfile

import (
	"bytes"
	"math"
	"testing"
	"time"
)

func TestFiletimeKnownValues(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		ft   Filetime
	}{
		{"windows epoch", time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"unix epoch", time.Unix(0, 0), 116444736000000000},
		{"one interval", time.Date(1601, 1, 1, 0, 0, 0, 100, time.UTC), 1},
		{"unix epoch plus 1.5s", time.Unix(1, 500_000_000), 116444736015000000},
		{"before unix epoch", time.Unix(-1, 0), 116444735990000000},
		{"2024", time.Date(2024, 2, 29, 12, 30, 45, 123456700, time.UTC), 133536834451234567},
		{"last FILETIME", time.Date(60056, 5, 28, 5, 36, 10, 955161500, time.UTC), math.MaxUint64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewFiletime(tt.t); got != tt.ft {
				t.Errorf("NewFiletime(%v) = %d, want %d", tt.t, got, tt.ft)
			}
			if got := tt.ft.Time(); !got.Equal(tt.t) || got.Location() != time.UTC {
				t.Errorf("Filetime(%d).Time() = %v, want %v UTC", tt.ft, got, tt.t)
			}
		})
	}
}

func TestFiletimeClampAndTruncate(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		ft   Filetime
	}{
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"zero time.Time", time.Time{}, 0},
		{"just before 1601", time.Date(1600, 12, 31, 23, 59, 59, 999999999, time.UTC), 0},
		{"sub-interval truncated", time.Date(1601, 1, 1, 0, 0, 0, 199, time.UTC), 1},
		{"pre-1970 truncated toward 1601", time.Unix(-1, 999_999_999), 116444735999999999},
		{"after the last FILETIME", time.Date(60056, 5, 28, 5, 36, 11, 0, time.UTC), math.MaxUint64},
		{"far future", time.Date(200000, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxUint64},
		{"largest Unix seconds", time.Unix(math.MaxInt64, 0), math.MaxUint64},
		{"smallest Unix seconds", time.Unix(math.MinInt64, 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewFiletime(tt.t); got != tt.ft {
				t.Errorf("NewFiletime(%v) = %d, want %d", tt.t, got, tt.ft)
			}
		})
	}
}

func TestFiletimeRoundTripAcrossYears(t *testing.T) {
	// Years outside 1678-2262 overflow int64 nanoseconds in naive code.
	for _, year := range []int{1601, 1602, 1677, 1678, 1969, 1970, 2038, 2262, 2263, 3000, 9999, 10000, 30827, 60055} {
		tm := time.Date(year, 7, 14, 13, 14, 15, 987654300, time.UTC)
		ft := NewFiletime(tm)
		if back := ft.Time(); !back.Equal(tm) {
			t.Errorf("year %d: %v -> %d -> %v", year, tm, ft, back)
		}
	}
	for _, ft := range []Filetime{0, 1, 9_999_999, 10_000_000, 116444736000000000, 1 << 62, math.MaxUint64 - 1, math.MaxUint64} {
		if back := NewFiletime(ft.Time()); back != ft {
			t.Errorf("Filetime %d -> %v -> %d", ft, ft.Time(), back)
		}
	}
}

func TestBasicInfoBinary(t *testing.T) {
	bi := BasicInfo{
		CreationTime:   0x0102030405060708,
		LastAccessTime: 0x1112131415161718,
		LastWriteTime:  0x2122232425262728,
		ChangeTime:     0x3132333435363738,
		FileAttributes: AttrDirectory | AttrArchive,
	}
	want := unhex(t, `
		0807060504030201 | 1817161514131211 | 2827262524232221 | 3837363534333231
		30000000 | 00000000`)
	got, err := bi.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalBinary = %x\nwant %x", got, want)
	}
	var back BasicInfo
	if err := back.UnmarshalBinary(want); err != nil {
		t.Fatal(err)
	}
	if back != bi {
		t.Errorf("UnmarshalBinary = %+v, want %+v", back, bi)
	}
	// Padding is ignored on input.
	padded := bytes.Clone(want)
	copy(padded[36:], []byte{0xde, 0xad, 0xbe, 0xef})
	if err := back.UnmarshalBinary(padded); err != nil || back != bi {
		t.Errorf("UnmarshalBinary with non-zero padding = %+v, %v", back, err)
	}
	for _, n := range []int{0, 39, 41} {
		err := back.UnmarshalBinary(make([]byte, n))
		wantFormatError(t, err, 0, "FILE_BASIC_INFO")
	}
}

func TestAttributeString(t *testing.T) {
	tests := []struct {
		a    uint32
		want string
	}{
		{0, "0"},
		{AttrDirectory | AttrArchive, "DIRECTORY|ARCHIVE"},
		{AttrNormal, "NORMAL"},
		{AttrArchive | AttrNotContentIndexed, "ARCHIVE|NOT_CONTENT_INDEXED"},
		{AttrReadOnly | AttrArchive | 0x800000, "READONLY|ARCHIVE|0x800000"},
		{0x80000000 | 0x00800000, "0x80800000"},
		{AttrRecallOnDataAccess | AttrPinned, "PINNED|RECALL_ON_DATA_ACCESS"},
		{AttrReparsePoint | AttrSparseFile | AttrDirectory, "DIRECTORY|SPARSE_FILE|REPARSE_POINT"},
	}
	for _, tt := range tests {
		if got := AttributeString(tt.a); got != tt.want {
			t.Errorf("AttributeString(%#x) = %q, want %q", tt.a, got, tt.want)
		}
	}
	// Every named constant has a distinct name.
	all := uint32(0)
	for _, n := range attrNames {
		if all&n.bit != 0 {
			t.Errorf("bit %#x listed twice", n.bit)
		}
		all |= n.bit
		if got := AttributeString(n.bit); got != n.name {
			t.Errorf("AttributeString(%#x) = %q", n.bit, got)
		}
	}
	if all != 0x005FFFF7 {
		t.Errorf("known attribute bits = %#x, want 0x5ffff7", all)
	}
}
