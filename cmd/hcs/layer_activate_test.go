package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

// TestLayerScratchActivatePrepare drives the scratch layer commands through
// the built binary, whose mounts and attachments outlive each command.
func TestLayerScratchActivatePrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices, FUSE and mounts")
	}
	bin := hcsBinary(t)
	state := t.TempDir()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", state)
	state = filepath.Join(state, "layers")
	t.Cleanup(func() {
		ms, _ := mountinfo.Read()
		for i := len(ms) - 1; i >= 0; i-- {
			if strings.HasPrefix(ms[i].Mountpoint, state+"/") {
				exec.Command("umount", "-l", ms[i].Mountpoint).Run()
			}
		}
		as, _ := attach.List()
		for _, a := range as {
			attach.Detach(context.Background(), a.Device)
		}
	})
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	var buf bytes.Buffer
	if err := sampletar.Write(&buf, sampletar.Options{Seed: 3, Files: 8, Bytes: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.ImportLayerFromTar(context.Background(), &buf, base, nil); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (layerStateResult, int, string) {
		cmd := exec.Command(bin, append([]string{"-o", "json"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return layerStateResult{}, ee.ExitCode(), stderr.String()
		} else if err != nil {
			t.Fatal(err)
		}
		var r layerStateResult
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		return r, 0, stderr.String()
	}
	scratch := filepath.Join(dir, "ctr")
	if r, code, msg := run("layer", "scratch", "--size", "64MiB", "--parent", base, scratch); code != 0 || r.Path != scratch {
		t.Fatalf("scratch: %+v exit %d %s", r, code, msg)
	}
	if _, code, _ := run("layer", "scratch", scratch); code != exitExists {
		t.Errorf("scratch over an existing layer: exit %d, want %d", code, exitExists)
	}
	for i := 1; i <= 2; i++ {
		r, code, msg := run("layer", "activate", scratch)
		if code != 0 || r.Activations != i || filepath.Base(r.Path) != "volume" || !strings.HasPrefix(r.Path, state) {
			t.Fatalf("activate %d: %+v exit %d %s", i, r, code, msg)
		}
	}
	r, code, msg := run("layer", "prepare", scratch) // parents from layerchain.json
	if code != 0 || r.Prepares != 1 || filepath.Base(r.Path) != "union" {
		t.Fatalf("prepare: %+v exit %d %s", r, code, msg)
	}
	if ms, _ := mountinfo.Lookup(r.Path); len(ms) != 1 || ms[0].FSType != "overlay" {
		t.Fatalf("no union at %s after the command exited: %+v", r.Path, ms)
	}
	if err := os.WriteFile(filepath.Join(r.Path, "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, code, _ := run("layer", "path", scratch); code != 0 || p.Path != r.Path {
		t.Errorf("path: %+v exit %d", p, code)
	}
	if _, code, _ := run("layer", "deactivate", scratch); code != 0 {
		t.Fatalf("first deactivate: exit %d", code)
	}
	if _, code, msg := run("layer", "deactivate", scratch); code != exitFailure || !strings.Contains(msg, "unprepare") {
		t.Errorf("last deactivate of a prepared layer: exit %d %q", code, msg)
	}
	if r, code, _ := run("layer", "unprepare", scratch); code != 0 || r.Prepares != 0 || filepath.Base(r.Path) != "volume" {
		t.Fatalf("unprepare: %+v exit %d", r, code)
	}
	if b, err := os.ReadFile(filepath.Join(r.Path, "..", "volume", "Files", "hello.txt")); err != nil || string(b) != "hi" {
		t.Errorf("the write is not on the volume: %q %v", b, err)
	}
	if r, code, _ := run("layer", "deactivate", scratch); code != 0 || r.Path != scratch {
		t.Fatalf("deactivate: %+v exit %d", r, code)
	}
	if _, code, _ := run("layer", "deactivate", scratch); code != exitNotFound {
		t.Errorf("deactivate of an inactive layer: exit %d, want %d", code, exitNotFound)
	}
	if _, code, _ := run("layer", "activate", filepath.Join(dir, "missing")); code != exitNotFound {
		t.Errorf("activate of a missing layer: exit %d, want %d", code, exitNotFound)
	}
	if ms, _ := mountinfo.Read(); len(mountinfo.Under(ms, state)) > 0 {
		t.Errorf("mounts left: %+v", mountinfo.Under(ms, state))
	}
	if as, _ := attach.List(); len(as) > 0 {
		t.Errorf("attachments left: %+v", as)
	}
}
