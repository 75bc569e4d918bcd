package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/internal/compress"
)

func decompress(t *testing.T, b []byte) ([]byte, compress.Format) {
	t.Helper()
	rc, f, err := compress.NewReaderFormat(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return out, f
}

func TestExport(t *testing.T) {
	layer, _, want := reference(t, sampleTar(t))
	tests := []struct {
		name   string
		flags  []string
		format compress.Format
	}{
		{"plain", nil, compress.None},
		{"gzip", []string{"--gzip"}, compress.Gzip},
		{"zstd", []string{"--zstd"}, compress.Zstd},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/file", func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "out.tar")
			args := append([]string{"layer", "export", "-f", file}, tt.flags...)
			r := hcs(t, nil, append(args, layer)...)
			wantCode(t, r, exitOK)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got, f := decompress(t, b)
			if f != tt.format {
				t.Errorf("compression %v, want %v", f, tt.format)
			}
			if !bytes.Equal(got, want) {
				t.Error("export differs from the library's export")
			}
			wantDirNames(t, dir, "out.tar")
		})
		t.Run(tt.name+"/stdout", func(t *testing.T) {
			args := append([]string{"layer", "export"}, tt.flags...)
			r := hcs(t, nil, append(args, layer)...)
			wantCode(t, r, exitOK)
			got, f := decompress(t, []byte(r.stdout))
			if f != tt.format {
				t.Errorf("compression %v, want %v", f, tt.format)
			}
			if !bytes.Equal(got, want) {
				t.Error("export differs from the library's export")
			}
			if r.stderr != "" {
				t.Errorf("stderr: %q", r.stderr)
			}
		})
	}
}

func TestExportReplacesJSON(t *testing.T) {
	layer, _, want := reference(t, sampleTar(t))
	dir := t.TempDir()
	file := writeFile(t, dir, "out.tar", []byte("old content"))
	r := hcs(t, nil, "layer", "export", "-o", "json", "--file", file, layer)
	wantCode(t, r, exitOK)
	var got exportResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	if got.Layer != layer || got.File != file || got.Bytes != int64(len(want)) || got.Compression != "none" {
		t.Errorf("got %+v", got)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, want) {
		t.Error("the existing file was not replaced by the export")
	}
}

// TestExportFailure checks that a failed export leaves no file behind, and keeps an
// existing one.
func TestExportFailure(t *testing.T) {
	layer, _, _ := reference(t, sampleTar(t))
	notLayer := t.TempDir()
	writeFile(t, notLayer, "data", []byte("x"))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		ctx   context.Context
		layer string
		code  int
	}{
		{"not a layer", context.Background(), notLayer, exitNotFound},
		{"missing", context.Background(), filepath.Join(notLayer, "missing"), exitNotFound},
		{"interrupted", canceled, layer, exitInterrupted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := hcsContext(t, tt.ctx, nil, "layer", "export", "-f", filepath.Join(dir, "out.tar"), tt.layer)
			wantCode(t, r, tt.code)
			wantDirNames(t, dir)

			writeFile(t, dir, "old.tar", []byte("old"))
			r = hcsContext(t, tt.ctx, nil, "layer", "export", "-f", filepath.Join(dir, "old.tar"), tt.layer)
			wantCode(t, r, tt.code)
			wantDirNames(t, dir, "old.tar")
			if b, _ := os.ReadFile(filepath.Join(dir, "old.tar")); string(b) != "old" {
				t.Errorf("old.tar holds %q after a failed export", b)
			}
		})
	}
}
