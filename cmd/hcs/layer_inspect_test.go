package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

type inspectDoc struct {
	Entries []inspectEntry `json:"entries"`
}

func parseInspect(t *testing.T, out string) []inspectEntry {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var doc inspectDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("inspect output is not one JSON document: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatal("inspect output holds more than one JSON value")
	}
	return doc.Entries
}

func names(ents []inspectEntry) []string {
	var n []string
	for _, e := range ents {
		n = append(n, e.Path)
	}
	return n
}

// scanNames lists the entry names of a tar as the library decodes them.
func scanNames(t *testing.T, b []byte) []string {
	t.Helper()
	var n []string
	err := ociwclayer.ScanTar(context.Background(), bytes.NewReader(b), func(e *winlayer.Entry) error {
		n = append(n, e.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// layerNames lists the entry names of a layer folder as the library reads them.
func layerNames(t *testing.T, layer string) []string {
	t.Helper()
	r, err := winlayer.NewReader(context.Background(), layer)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var n []string
	for {
		e, err := r.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n = append(n, e.Name)
	}
}

func TestInspectJSON(t *testing.T) {
	in := sampleTar(t)
	layer, _, _ := reference(t, in)
	dir := t.TempDir()
	plain := writeFile(t, dir, "in.tar", in)
	zst := writeFile(t, dir, "in.tar.zst", compressBytes(t, in, compress.Zstd))
	tarNames := scanNames(t, in)
	tests := []struct {
		name  string
		stdin io.Reader
		arg   string
		want  []string
	}{
		{"tar", nil, plain, tarNames},
		{"zstd tar", nil, zst, tarNames},
		{"gzip stdin", bytes.NewReader(compressBytes(t, in, compress.Gzip)), "-", tarNames},
		{"layer folder", nil, layer, layerNames(t, layer)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := hcs(t, tt.stdin, "layer", "inspect", "-o", "json", tt.arg)
			wantCode(t, r, exitOK)
			ents := parseInspect(t, r.stdout)
			if got := names(ents); !slices.Equal(got, tt.want) {
				t.Fatalf("names differ:\ngot  %q\nwant %q", got, tt.want)
			}
			types := map[string]int{}
			var sd, ea, stream bool
			for _, e := range ents {
				types[e.Type]++
				sd = sd || strings.HasPrefix(e.SecurityDescriptor, "O:")
				ea = ea || len(e.ExtendedAttributes) > 0 && len(e.ExtendedAttributes[0].Value) > 0
				stream = stream || len(e.Streams) > 0 && e.Streams[0].Size > 0
				if e.Type == typeFile && (e.LastWriteTime == "" || len(e.AttributeNames) == 0) {
					t.Errorf("%s: no time or attributes: %+v", e.Path, e)
				}
				if (e.Type == typeLink || e.Type == typeSymlink || e.Type == typeJunction) && e.Target == "" {
					t.Errorf("%s: %s without target", e.Path, e.Type)
				}
			}
			for _, typ := range []string{typeFile, typeDir, typeLink, typeSymlink, typeJunction} {
				if types[typ] == 0 {
					t.Errorf("no entry of type %s: %v", typ, types)
				}
			}
			if !sd || !ea || !stream {
				t.Errorf("missing metadata: security descriptor %v, EA %v, stream %v", sd, ea, stream)
			}
		})
	}
}

func TestInspectTable(t *testing.T) {
	in := sampleTar(t)
	file := writeFile(t, t.TempDir(), "in.tar", in)
	for _, output := range []string{"text", "table"} {
		r := hcs(t, nil, "layer", "inspect", "-o", output, file)
		wantCode(t, r, exitOK)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		want := scanNames(t, in)
		if len(lines) != len(want)+1 {
			t.Fatalf("%d lines, want a header and %d entries", len(lines), len(want))
		}
		if f := strings.Fields(lines[0]); f[0] != "TYPE" || f[len(f)-1] != "NAME" {
			t.Errorf("header %q", lines[0])
		}
		for i, name := range want {
			if !strings.Contains(lines[i+1], " "+name) {
				t.Errorf("line %d %q lacks %s", i+1, lines[i+1], name)
			}
		}
	}
}

func TestInspectWhiteoutAndEscapes(t *testing.T) {
	b := tarOf(t, "Files/", "Files/gone/.wh.file", "Files/x\x1b[31m")
	file := writeFile(t, t.TempDir(), "in.tar", b)
	r := hcs(t, nil, "layer", "inspect", "-o", "json", file)
	wantCode(t, r, exitInvalidInput) // the escape character is not a valid Windows name
	r = hcs(t, nil, "layer", "inspect", "-o", "json", writeFile(t, t.TempDir(), "ok.tar", tarOf(t, "Files/", "Files/gone/.wh.file")))
	wantCode(t, r, exitOK)
	ents := parseInspect(t, r.stdout)
	if len(ents) != 2 || ents[1].Type != typeWhiteout || ents[1].Path != "Files/gone/file" {
		t.Errorf("entries %+v", ents)
	}
	if got := cell("a\tb\x1b[31m\u009bc"); got != "a?b?[31m?c" {
		t.Errorf("cell = %q", got)
	}
}

func TestInspectEmptyAndErrors(t *testing.T) {
	dir := t.TempDir()
	r := hcs(t, nil, "layer", "inspect", "-o", "json", writeFile(t, dir, "empty.tar", tarOf(t)))
	wantCode(t, r, exitOK)
	if ents := parseInspect(t, r.stdout); len(ents) != 0 {
		t.Errorf("entries %v", ents)
	}
	wantCode(t, hcs(t, nil, "layer", "inspect", filepath.Join(dir, "missing")), exitNotFound)
	wantCode(t, hcs(t, nil, "layer", "inspect", dir), exitNotFound) // not a layer
	wantCode(t, hcs(t, nil, "layer", "inspect", writeFile(t, dir, "bad.tar", half(sampleTar(t)))), exitInvalidInput)
}
