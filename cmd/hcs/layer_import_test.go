package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/sampletar"
)

func TestImport(t *testing.T) {
	in := sampleTar(t)
	_, _, want := reference(t, in)
	tests := []struct {
		name   string
		format compress.Format
		stdin  bool
		flag   string
	}{
		{"file", compress.None, false, "-f"},
		{"file long flag", compress.None, false, "--file"},
		{"file -i", compress.None, false, "-i"},
		{"stdin", compress.None, true, ""},
		{"stdin dash", compress.None, true, "-f"},
		{"gzip file", compress.Gzip, false, "-f"},
		{"gzip stdin", compress.Gzip, true, ""},
		{"zstd file", compress.Zstd, false, "-f"},
		{"zstd stdin", compress.Zstd, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := compressBytes(t, in, tt.format)
			layer := filepath.Join(dir, "layer")
			args := []string{"layer", "import"}
			var r result
			if tt.stdin {
				if tt.flag != "" {
					args = append(args, tt.flag, "-")
				}
				r = hcs(t, bytes.NewReader(data), append(args, layer)...)
			} else {
				file := writeFile(t, dir, "in.tar", data)
				r = hcs(t, nil, append(args, tt.flag, file, layer)...)
			}
			wantCode(t, r, exitOK)
			re := regexp.MustCompile(`^imported [0-9.]+ [KM]iB into ` + regexp.QuoteMeta(layer) + ` in [0-9.]+m?s\n$`)
			if !re.MatchString(r.stdout) {
				t.Errorf("summary %q does not match %s", r.stdout, re)
			}
			if r.stderr != "" {
				t.Errorf("stderr: %q", r.stderr)
			}
			if got := libraryExport(t, layer); !bytes.Equal(got, want) {
				t.Error("the imported layer differs from the library's import")
			}
		})
	}
}

func TestImportJSON(t *testing.T) {
	in := sampleTar(t)
	_, size, _ := reference(t, in)
	dir := t.TempDir()
	data := compressBytes(t, in, compress.Gzip)
	file := writeFile(t, dir, "in.tar.gz", data)
	layer := filepath.Join(dir, "layer")
	r := hcs(t, nil, "layer", "import", "-o", "json", "-f", file, layer)
	wantCode(t, r, exitOK)
	var got importResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	want := importResult{Layer: layer, Bytes: size, Duration: got.Duration, ReadBytes: int64(len(data)), Compression: "gzip"}
	if got != want || got.Seconds <= 0 {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, key := range []string{`"layer":`, `"bytes":`, `"seconds":`} {
		if !strings.Contains(r.stdout, key) {
			t.Errorf("output lacks %s: %s", key, r.stdout)
		}
	}
}

func TestImportParent(t *testing.T) {
	base, _, _ := reference(t, sampleTar(t))
	var buf bytes.Buffer
	err := sampletar.Write(&buf, sampletar.Options{Seed: 2, Files: 20, Bytes: 64 << 10,
		Whiteouts: []string{"Files/Windows/System32/d0000/f00003.dll", "Files/gone"}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, want := reference(t, buf.Bytes(), base)
	dir := t.TempDir()
	layer := filepath.Join(dir, "child")
	r := hcs(t, bytes.NewReader(buf.Bytes()), "layer", "import", "--no-sync", "--parent", base, layer)
	wantCode(t, r, exitOK)
	if got := libraryExport(t, layer); !bytes.Equal(got, want) {
		t.Error("the child layer differs from the library's import")
	}
	chain, err := os.ReadFile(filepath.Join(layer, "layerchain.json"))
	if err != nil || !strings.Contains(string(chain), base) {
		t.Errorf("layerchain.json = %s (%v), want %s", chain, err, base)
	}

	// Without the parent the whiteouts are refused: a base layer removes nothing.
	r = hcs(t, bytes.NewReader(buf.Bytes()), "layer", "import", filepath.Join(dir, "orphan"))
	wantCode(t, r, exitInvalidInput)
	wantDirNames(t, dir, "child")
}

func TestImportProgress(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "in.tar", sampleTar(t))
	for _, quiet := range []bool{false, true} {
		var stdout, stderr bytes.Buffer
		a := newApp(strings.NewReader(""), &stdout, &stderr)
		a.forceProgress = true
		args := []string{"layer", "import", "-f", file, filepath.Join(dir, "layer")}
		if quiet {
			args = append(args, "--quiet")
		}
		if code := a.execute(context.Background(), args); code != exitOK {
			t.Fatalf("exit code %d: %s", code, stderr.String())
		}
		os.RemoveAll(filepath.Join(dir, "layer"))
		if quiet {
			if stdout.Len()+stderr.Len() != 0 {
				t.Errorf("--quiet printed %q and %q", stdout.String(), stderr.String())
			}
			continue
		}
		// The import may end before the first redraw; the erase is always there.
		if !strings.HasSuffix(stderr.String(), "\r\x1b[K") {
			t.Errorf("stderr %q does not end by erasing the progress line", stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "imported ") {
			t.Errorf("stdout %q", stdout.String())
		}
	}
}

// tarOf builds a tar of the given entries, each a directory (name ending in /) or a
// small file.
func tarOf(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, Typeflag: tar.TypeReg, Size: 5, Mode: 0o100000, Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o40000
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("hello"))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func half(b []byte) []byte { return b[:len(b)/2] }

func TestImportInvalid(t *testing.T) {
	in := sampleTar(t)
	corrupt := compressBytes(t, in, compress.Gzip)
	corrupt = append(bytes.Clone(corrupt[:len(corrupt)/2]), bytes.Repeat([]byte{0x55}, 4096)...)
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated", in[:len(in)/2]},
		{"truncated in a header", in[:len(in)/2&^511+100]},
		{"truncated gzip", half(compressBytes(t, in, compress.Gzip))},
		{"truncated zstd", half(compressBytes(t, in, compress.Zstd))},
		{"corrupt gzip", corrupt},
		{"dotdot", tarOf(t, "Files/", "../escape")},
		{"dotdot inside", tarOf(t, "Files/", "Files/../../escape")},
		{"dotdot deep", tarOf(t, "Files/", "Files/a/", "Files/a/../../../escape")},
		{"absolute", tarOf(t, "/escape")},
		{"outside", tarOf(t, "escape")},
		{"case collision", tarOf(t, "Files/", "Files/a", "Files/A")},
		{"garbage", bytes.Repeat([]byte("not a tar "), 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "layers")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			file := writeFile(t, top, "in.tar", tt.data)
			r := hcs(t, nil, "layer", "import", "-f", file, filepath.Join(dir, "layer"))
			wantCode(t, r, exitInvalidInput)
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
			wantDirNames(t, dir)
			wantDirNames(t, top, "in.tar", "layers")
		})
	}
}

func TestImportExists(t *testing.T) {
	dir := t.TempDir()
	layer := filepath.Join(dir, "layer")
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, layer, "keep", []byte("data"))
	r := hcs(t, bytes.NewReader(sampleTar(t)), "layer", "import", layer)
	wantCode(t, r, exitExists)
	wantDirNames(t, layer, "keep")
	wantDirNames(t, dir, "layer")

	// An empty directory is a valid destination.
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	wantCode(t, hcs(t, bytes.NewReader(sampleTar(t)), "layer", "import", empty), exitOK)
}

func TestImportNotFound(t *testing.T) {
	dir := t.TempDir()
	r := hcs(t, nil, "layer", "import", "-f", filepath.Join(dir, "missing.tar"), filepath.Join(dir, "layer"))
	wantCode(t, r, exitNotFound)
	wantDirNames(t, dir)
}

func TestImportInterrupted(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := hcsContext(t, ctx, bytes.NewReader(sampleTar(t)), "layer", "import", filepath.Join(dir, "layer"))
	wantCode(t, r, exitInterrupted)
	if r.stderr != "hcs: interrupted\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	wantDirNames(t, dir)
}
