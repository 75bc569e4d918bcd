package store

import (
	"encoding/json"
	"testing"
	"time"
)

// linkSeeds are records as json.Marshal writes them, with the shapes decodeLink
// reads itself and those it hands to the full decoder.
func linkSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, r := range []record{
		{ID: 1, HasDir: true, Info: Info{Key: "base", Kind: KindCommitted, Format: FormatLinuxDir, Created: time.Unix(1e9, 0).UTC()}},
		{ID: 77, Info: Info{Key: "sha256:0123", Parent: "base", Kind: KindActive, Format: FormatWindowsFolder, Labels: map[string]string{"a": "b"}, DiffID: "sha256:bb"}},
		{ID: 9, Info: Info{Key: `q"uo\te<&>`, Parent: `p"<`, Kind: KindView, Format: FormatLinuxDir}},
		{ID: 1 << 60, Info: Info{Key: "ü∂", Parent: "x y", Kind: KindCommitted, Format: FormatExt4VHD}},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestDecodeLinkMatchesDecodeRecord(t *testing.T) {
	for _, v := range linkSeeds(t) {
		var r record
		json.Unmarshal(v, &r)
		full, err := decodeRecord(r.Key, v)
		if err != nil {
			t.Fatal(err)
		}
		link, err := decodeLink(r.Key, v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if link.ID != full.ID || link.Key != full.Key || link.Parent != full.Parent || link.Kind != full.Kind || link.Format != full.Format {
			t.Errorf("%s: decodeLink = %+v, decodeRecord = %+v", v, link, full)
		}
	}
	if _, err := decodeLink("k", []byte(`{"id":3,"key":"k","kind":"active","format":"linux-dir","crea`)); err == nil {
		t.Error("a truncated record decodes")
	}
	if _, err := decodeLink("other", linkSeeds(t)[0]); err == nil {
		t.Error("a record under another key decodes")
	}
}

// FuzzDecodeLink checks that whatever decodeLink reads, the full decoder reads
// the same, and that it never panics.
func FuzzDecodeLink(f *testing.F) {
	for _, v := range linkSeeds(f) {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		var probe struct {
			Key string `json:"key"`
		}
		json.Unmarshal(v, &probe)
		link, lerr := decodeLink(probe.Key, v)
		full, ferr := decodeRecord(probe.Key, v)
		if lerr != nil || ferr != nil {
			return // a record the full decoder refuses may still pass (see decodeLink)
		}
		if link.ID != full.ID || link.Key != full.Key || link.Parent != full.Parent || link.Kind != full.Kind || link.Format != full.Format {
			t.Errorf("%q: decodeLink = %+v, decodeRecord = %+v", v, link, full)
		}
	})
}
