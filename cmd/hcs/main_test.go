package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

// result is the outcome of one hcs run.
type result struct {
	stdout, stderr string
	code           int
}

// hcs runs the command line in-process with stdin as standard input.
func hcs(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	return hcsContext(t, context.Background(), stdin, args...)
}

func hcsContext(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr bytes.Buffer
	code := newApp(stdin, &stdout, &stderr).execute(ctx, args)
	return result{stdout.String(), stderr.String(), code}
}

// wantCode fails the test unless r exited with code; a failure prints exactly one
// "hcs: " line first, usage errors add a hint.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if code == exitOK {
		return
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "hcs: ") || strings.Count(r.stderr, "hcs: ") != 1 {
		t.Errorf("stderr is not one \"hcs: \" message: %q", r.stderr)
	}
	if code == exitUsage && (len(lines) != 2 || !strings.HasPrefix(lines[1], "Run '")) {
		t.Errorf("usage error without a hint: %q", r.stderr)
	}
}

var sample = sync.OnceValues(func() ([]byte, error) {
	var buf bytes.Buffer
	err := sampletar.Write(&buf, sampletar.Options{Seed: 1, Files: 50, Bytes: 1 << 20, Hives: true, UtilityVM: true, Unicode: true})
	return buf.Bytes(), err
})

// sampleTar returns the test layer tar.
func sampleTar(t *testing.T) []byte {
	t.Helper()
	b, err := sample()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reference imports b with the library and returns the layer and its library export.
func reference(t *testing.T, b []byte, parents ...string) (layer string, size int64, exported []byte) {
	t.Helper()
	layer = filepath.Join(t.TempDir(), "ref")
	size, err := ociwclayer.ImportLayerFromTar(context.Background(), bytes.NewReader(b), layer, parents)
	if err != nil {
		t.Fatalf("library import: %v", err)
	}
	return layer, size, libraryExport(t, layer)
}

func libraryExport(t *testing.T, layer string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ociwclayer.ExportLayerToTar(context.Background(), &buf, layer, nil); err != nil {
		t.Fatalf("library export of %s: %v", layer, err)
	}
	return buf.Bytes()
}

func compressBytes(t *testing.T, b []byte, f compress.Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := compress.NewWriter(&buf, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dirNames lists dir, hidden entries included, so leftovers of staging show.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantDirNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

// binDir holds the binary built by buildBinary, removed by TestMain.
var binDir string

var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hcs-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "hcs")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &exec.Error{Name: "go build: " + string(out), Err: err}
	}
	return bin, nil
})

// hcsBinary builds the command once per test run and returns its path.
func hcsBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("building the hcs binary: skipped in -short mode")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command in PATH to build the hcs binary")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
