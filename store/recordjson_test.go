package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// The records Prepare, View, Commit and Import write must be the bytes
// json.Marshal would write: readers decode them with encoding/json, and
// decodeLink reads their leading fields in json.Marshal's order.
func TestEncodeRecordIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 12, 7, 23, 59, 1, 123456789, time.UTC)
	for _, r := range []*record{
		{ID: 1, Info: Info{Key: "k", Kind: KindActive, Format: FormatLinuxDir, Created: at, Updated: at}},
		{ID: 1 << 63, Info: Info{Key: "layer/with\"quote", Parent: "p<a>&b", Kind: KindCommitted, Format: FormatWindowsFolder,
			Labels: map[string]string{"z": "1", "a": "\x00\n\t\u2028", "m": "é", "bad": "\xff\xfe"}, Size: -1, Inodes: 1 << 40,
			DiffID: "sha256:abc", ChainID: "sha256:def", Created: at, Updated: at.Add(time.Hour)}, HasDir: true},
		{ID: 7, Info: Info{Key: "v", Parent: "p", Kind: KindView, Format: "ext4-vhd", Labels: map[string]string{}, Created: at.In(time.FixedZone("x", 3600)), Updated: time.Time{}}},
		{ID: 9, Info: Info{Key: "u", Kind: Kind(99), Format: "", Created: at, Updated: at}},
	} {
		checkEncodeRecord(t, r)
	}
}

func checkEncodeRecord(t *testing.T, r *record) {
	t.Helper()
	want, werr := json.Marshal(r)
	got, gerr := encodeRecord(r)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("record %+v: json.Marshal error %v, encodeRecord error %v", r, werr, gerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("record %+v:\nencodeRecord %s\njson.Marshal %s", r, got, want)
	}
}

func FuzzEncodeRecord(f *testing.F) {
	f.Add(uint64(1), "k", "", 0, "linux-dir", "", "", "", int64(0), int64(0), int64(1e18), int64(1e18), false)
	f.Add(uint64(42), "a\"b", "p\\q", 1, "windows-folder", "lab<el>", "v&al\u2028", "sha256:x", int64(-5), int64(7), int64(-1e18), int64(3), true)
	f.Add(uint64(3), "\xff", "\x00", 2, "\u00e9", "k", "\x7f", "", int64(1<<62), int64(-1), int64(0), int64(-62135596800), false)
	f.Fuzz(func(t *testing.T, id uint64, key, parent string, kind int, format, lk, lv, digest string, size, inodes, created, updated int64, hasDir bool) {
		r := &record{ID: id, HasDir: hasDir, Info: Info{Key: key, Parent: parent, Kind: Kind(kind), Format: Format(format),
			Size: size, Inodes: inodes, DiffID: digest, ChainID: lv,
			Created: time.Unix(0, created).UTC(), Updated: time.Unix(updated, 0)}}
		if lk != "" {
			r.Labels = map[string]string{lk: lv, lk + "2": key}
		}
		checkEncodeRecord(t, r)
	})
}
