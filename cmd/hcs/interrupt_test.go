package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/internal/staging"
)

// TestInterrupts runs each long command as a subprocess of the built CLI and
// sends it SIGINT once or twice at a random point: it ends with exit code 130
// (or 0 when it finished first) and leaves nothing of its work behind, no
// staging file or folder and no partial result. Then a process killed with
// SIGKILL leaves its staging file, and the next command that stages into the
// same folder removes it.
func TestInterrupts(t *testing.T) {
	bin := hcsBinary(t)
	if testing.Short() {
		t.Skip("interrupting subprocesses: skipped in -short mode")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))

	in := t.TempDir()
	var tarb bytes.Buffer
	if err := sampletar.Write(&tarb, sampletar.Options{Seed: 4, Files: 600, Bytes: 96 << 20, Unicode: true}); err != nil {
		t.Fatal(err)
	}
	winTar := writeFile(t, in, "win.tar", tarb.Bytes())
	raw := make([]byte, 192<<20)
	for i := 0; i < len(raw); i += 4096 {
		raw[i] = byte(i>>12) | 1
	}
	rawImg := writeFile(t, in, "disk.img", raw)
	linuxTar := writeFile(t, in, "linux.tar", linuxLayerTar(t, 96<<20))
	layer := filepath.Join(in, "layer")
	wantCode(t, hcs(t, nil, "layer", "import", "-f", winTar, layer), exitOK)
	cimLayer := filepath.Join(in, "cimsrc", "layer")
	wantCode(t, hcs(t, nil, "cim", "create", "-f", winTar, cimLayer), exitOK)

	type command struct {
		name string
		args func(out string) []string // out: the result, in a fresh folder
	}
	commands := []command{
		{"layer import", func(out string) []string { return []string{"layer", "import", "-f", winTar, out} }},
		{"layer export", func(out string) []string { return []string{"layer", "export", "-f", out, layer} }},
		{"cim create", func(out string) []string { return []string{"cim", "create", "-f", winTar, out} }},
		{"cim export", func(out string) []string { return []string{"cim", "export", "-f", out, cimLayer} }},
		{"vhd convert", func(out string) []string {
			return []string{"vhd", "convert", "--format", "raw", "--to", "vhdx-fixed", rawImg, out + ".vhdx"}
		}},
		{"vhd create", func(out string) []string {
			return []string{"vhd", "create", "--type", "fixed", "--size", "256M", out + ".vhdx"}
		}},
		{"tar2ext4", func(out string) []string { return []string{"tar2ext4", "-i", linuxTar, "-o", out, "-vhd"} }},
		{"ocilayer apply", func(out string) []string { return []string{"ocilayer", "apply", "-f", linuxTar, out} }},
		{"ocilayer diff", func(out string) []string {
			return []string{"ocilayer", "diff", "-f", out, filepath.Join(layer, "Files")}
		}},
	}
	for _, c := range commands {
		for _, signals := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d", c.name, signals), func(t *testing.T) {
				dir := t.TempDir()
				out := filepath.Join(dir, "out")
				cmd := exec.Command(bin, c.args(out)...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(30+rng.IntN(250)) * time.Millisecond)
				for i := 0; i < signals; i++ {
					cmd.Process.Signal(syscall.SIGINT)
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
				err := cmd.Wait()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
					if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
						// The signal came before the program set up its handlers
						// (while the runtime started): nothing was begun.
						t.Logf("ended by the signal before its handlers were set up")
						if names := dirNames(t, dir); len(names) > 0 {
							t.Errorf("left behind: %v", names)
						}
						return
					}
				}
				switch code {
				case exitInterrupted:
					if !strings.Contains(stderr.String(), "interrupted") {
						t.Errorf("no message: %q", stderr.String())
					}
					if names := dirNames(t, dir); len(names) > 0 {
						t.Errorf("left behind after %d signals: %v (stderr %q)", signals, names, stderr.String())
					}
				case exitOK:
					t.Logf("finished before the signal")
					for _, n := range dirNames(t, dir) {
						if strings.HasPrefix(n, ".") && n != ".cim-layers" {
							t.Errorf("left behind: %s", n)
						}
					}
				default:
					t.Fatalf("exit code %d: %s", code, stderr.String())
				}
			})
		}
	}

	// A worker killed outright: its staging stays until the next command in
	// that folder.
	dir := t.TempDir()
	cmd := exec.Command(bin, "vhd", "convert", "--format", "raw", "--to", "vhdx-fixed", rawImg, filepath.Join(dir, "x.vhdx"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var left []string
	for i := 0; i < 200 && len(left) == 0; i++ {
		time.Sleep(5 * time.Millisecond)
		left, _ = filepath.Glob(filepath.Join(dir, ".x.vhdx.hcs-tmp-*"))
	}
	if len(left) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Skip("the convert finished before a staging file was seen")
	}
	pid, _, _ := staging.Owner(left[0])
	syscall.Kill(pid, syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(left[0]); err != nil {
		t.Logf("the killed worker's staging file is gone already: %v", err)
	}
	wantCode(t, hcs(t, nil, "vhd", "create", "--size", "1M", filepath.Join(dir, "y.vhd")), exitOK)
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) > 0 {
		t.Errorf("the next command left a dead process's staging: %v", m)
	}
}

// linuxLayerTar is an OCI Linux layer tar of about size bytes of file data.
func linuxLayerTar(t *testing.T, size int) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	data := bytes.Repeat([]byte("hostcompute layer data\n"), 1<<16)
	for i := 0; b.Len() < size; i++ {
		if i%50 == 0 {
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%03d/", i/50), Typeflag: tar.TypeDir, Mode: 0o755})
		}
		n := len(data) - i%1000
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%03d/f%05d", i/50, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data[:n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestConcurrentCIMCreate: two cim create into one layer at once: exactly one
// wins and its layer is intact; the other fails with exit code 4.
func TestConcurrentCIMCreate(t *testing.T) {
	bin := hcsBinary(t)
	var tarb bytes.Buffer
	if err := sampletar.Write(&tarb, sampletar.Options{Seed: 9, Files: 300, Bytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	src := writeFile(t, t.TempDir(), "l.tar", tarb.Bytes())
	for round := 0; round < 3; round++ {
		layer := filepath.Join(t.TempDir(), "layer")
		cmds := make([]*exec.Cmd, 2)
		outs := make([]*bytes.Buffer, 2)
		for i := range cmds {
			outs[i] = new(bytes.Buffer)
			cmds[i] = exec.Command(bin, "cim", "create", "-f", src, layer)
			cmds[i].Stderr = outs[i]
			if err := cmds[i].Start(); err != nil {
				t.Fatal(err)
			}
		}
		codes := map[int]int{}
		for i, c := range cmds {
			err := c.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			codes[code]++
			if code != 0 && code != exitExists {
				t.Errorf("writer %d: exit %d: %s", i, code, outs[i])
			}
		}
		if codes[0] != 1 || codes[exitExists] != 1 {
			t.Fatalf("exit codes %v, want one 0 and one %d", codes, exitExists)
		}
		wantCode(t, hcs(t, nil, "cim", "verify", layer), exitOK)
		if names := dirNames(t, filepath.Dir(layer)); strings.Join(names, ",") != "cim-layers,layer" {
			t.Errorf("folder holds %v", names)
		}
	}
}
