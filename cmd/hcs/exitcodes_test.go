package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

func TestExitCode(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	tarErr := func(err error) error { return &ociwclayer.TarError{Entry: "Files/x", Offset: 512, Err: err} }
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"nil", bg, nil, exitOK},
		{"other", bg, errors.New("boom"), exitFailure},
		{"usage", bg, usageErrorf("bad"), exitUsage},
		{"tar name", bg, tarErr(&winlayer.EntryError{Err: winlayer.ErrInsecurePath}), exitInvalidInput},
		{"tar header", bg, tarErr(errors.New("archive/tar: invalid tar header")), exitInvalidInput},
		{"tar truncated", bg, tarErr(ociwclayer.ErrTruncated), exitInvalidInput},
		{"tar disk full", bg, tarErr(&fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), exitFailure},
		{"tar EEXIST", bg, tarErr(&fs.PathError{Op: "link", Path: "x", Err: syscall.EEXIST}), exitFailure},
		{"bad PAX", bg, fmt.Errorf("x: %w", ociwclayer.ErrBadPAX), exitInvalidInput},
		{"winfile format", bg, &winfile.FormatError{Structure: "reparse buffer"}, exitInvalidInput},
		{"corrupt layer", bg, &winlayer.LayerError{Op: "open", Err: winlayer.ErrCorrupt}, exitInvalidInput},
		{"corrupt gzip", bg, fmt.Errorf("%w: x", compress.ErrCorrupt), exitInvalidInput},
		{"xz", bg, compress.ErrUnsupported, exitInvalidInput},
		{"exists", bg, &winlayer.LayerError{Op: "create", Err: winlayer.ErrLayerExists}, exitExists},
		{"not a layer", bg, &notLayerError{path: "x"}, exitNotFound},
		{"ENOENT", bg, &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, exitNotFound},
		{"EACCES", bg, &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, exitFailure},
		{"canceled", bg, fmt.Errorf("x: %w", context.Canceled), exitInterrupted},
		{"after signal", canceled, tarErr(ociwclayer.ErrTruncated), exitInterrupted},
		{"reported", bg, reportedError{&fs.PathError{Op: "lstat", Err: syscall.ENOENT}}, exitNotFound},
	}
	for _, tt := range tests {
		if got := exitCode(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestUsage(t *testing.T) {
	layer, _, _ := reference(t, sampleTar(t))
	tests := [][]string{
		{"bogus"},
		{"layer", "bogus"},
		{"--bogus"},
		{"layer", "import"},
		{"layer", "import", "a", "b"},
		{"layer", "import", "--nope", "x"},
		{"layer", "import", "-f", "a", "-i", "b", "x"},
		{"layer", "export"},
		{"layer", "export", "--gzip", "--zstd", layer},
		{"layer", "inspect"},
		{"layer", "rm"},
		{"-o", "xml", "layer", "inspect", layer},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := hcs(t, nil, args...)
			wantCode(t, r, exitUsage)
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{nil, {"--help"}, {"layer"}, {"layer", "import", "--help"}} {
		r := hcs(t, nil, args...)
		wantCode(t, r, exitOK)
		if !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%q: no usage in %q", args, r.stdout)
		}
	}
	r := hcs(t, nil, "--help")
	for _, want := range []string{"Exit codes:", "130  interrupted"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("hcs --help lacks %q", want)
		}
	}
	r = hcs(t, nil, "--version")
	wantCode(t, r, exitOK)
	if !strings.HasPrefix(r.stdout, "hcs ") {
		t.Errorf("version %q", r.stdout)
	}
}

// TestSignal sends SIGINT to an import reading a tar from a pipe: the command stops,
// leaves nothing at the destination and exits with 130.
func TestSignal(t *testing.T) {
	bin := hcsBinary(t)
	head := endlessTarHead(t, sampleTar(t))
	dir := t.TempDir()
	layers := filepath.Join(dir, "layers")
	os.Mkdir(layers, 0o755)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "layer", "import", filepath.Join(layers, "layer"))
	cmd.Stdin, cmd.Stderr = pr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	defer cmd.Process.Kill()
	// The input does not end: its last entry declares more data than the
	// feeder writes while the test waits, so the import can only end through the signal,
	// however late the command gets to handle it. The feeder keeps data
	// coming, slowly, so that a read blocked on the pipe returns; it stops
	// when the command has exited and the pipe breaks.
	stop := make(chan struct{})
	fed := make(chan error, 1)
	go func() {
		defer pw.Close()
		if _, err := pw.Write(head); err != nil {
			fed <- err
			return
		}
		chunk := bytes.Repeat([]byte("x"), 4096)
		for {
			select {
			case <-stop:
				fed <- nil
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := pw.Write(chunk); err != nil {
				fed <- nil // the command has exited
				return
			}
		}
	}()
	defer close(stop)
	// Wait until the import has started writing its staging folder.
	for deadline := time.Now().Add(60 * time.Second); len(dirNames(t, layers)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("import did not start")
		}
		select {
		case err := <-fed:
			t.Fatalf("feeding the import: %v; stderr: %s", err, stderr.String())
		default:
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(60 * time.Second):
		t.Fatalf("import still running 60s after SIGINT; stderr: %s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("import ended with %v, want exit code %d; stderr: %s", err, exitInterrupted, stderr.String())
	}
	if stderr.String() != "hcs: interrupted\n" {
		t.Errorf("stderr %q", stderr.String())
	}
	wantDirNames(t, layers)
}

// endlessTarHead returns the entries of the layer tar b up to its first regular
// file, whose header is rewritten to declare 256 MiB of data: more than the
// feeder of TestSignal writes in the time the test waits.
func endlessTarHead(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(b)), tar.NewWriter(&buf)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("no regular file in the sample tar: %v", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = 256 << 20
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes() // the header is written; the data is the feeder's
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBinaryStdinFile runs the built command with a regular file as standard input
// and the sample tar as its content, the way a shell redirect does.
func TestBinaryStdinFile(t *testing.T) {
	bin := hcsBinary(t)
	in := sampleTar(t)
	_, _, want := reference(t, in)
	dir := t.TempDir()
	f, err := os.Open(writeFile(t, dir, "in.tar", in))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	layer := filepath.Join(dir, "layer")
	cmd := exec.Command(bin, "layer", "import", "-o", "json", layer)
	cmd.Stdin = f
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if !bytes.Contains(out, []byte(`"readBytes":`+fmt.Sprint(len(in)))) {
		t.Errorf("output %s", out)
	}
	cmd = exec.Command(bin, "layer", "export", layer)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Error("export differs from the library's export")
	}
	// A usage error from the real binary.
	err = exec.Command(bin, "layer", "rm").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
		t.Errorf("hcs layer rm: %v, want exit code %d", err, exitUsage)
	}
}

// TestInspectClosedPipe checks that "hcs layer inspect TAR | head" succeeds: the
// listing stops quietly when its reader goes away.
func TestInspectClosedPipe(t *testing.T) {
	bin := hcsBinary(t)
	var buf bytes.Buffer
	if err := sampletar.Write(&buf, sampletar.Options{Seed: 3, Files: 3000, Bytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, t.TempDir(), "big.tar", buf.Bytes())
	for _, output := range []string{"text", "json"} {
		cmd := exec.Command(bin, "layer", "inspect", "-o", output, file)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 100)
		if _, err := io.ReadFull(out, head); err != nil {
			t.Fatal(err)
		}
		out.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("-o %s: %v after its reader went away; stderr: %s", output, err, stderr.String())
		}
	}
}
