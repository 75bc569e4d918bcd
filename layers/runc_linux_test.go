package layers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// busyboxBase fills root with a minimal root file system around Debian's static
// busybox: /bin/busybox, applet links, the directories runc mounts on, and
// /deleted for the next layer to remove.
func busyboxBase(t *testing.T, bin string) func(root string) {
	return func(root string) {
		for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		src, err := os.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := os.OpenFile(filepath.Join(root, "bin", "busybox"), os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		dst.Close()
		for _, applet := range []string{"sh", "cat", "test", "echo", "ls"} {
			if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
				t.Fatal(err)
			}
		}
		write(t, filepath.Join(root, "deleted"), "removed by the top layer")
	}
}

// TestRuncOnLCOWLayers runs a process with runc on a busybox root file system made of
// three ext4 layer images mounted by MountLCOWLayers.
func TestRuncOnLCOWLayers(t *testing.T) {
	needRoot(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not found")
	}
	bin := "/usr/bin/busybox"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("busybox-static not installed:", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	base := layerVHD(t, dir, "busybox", busyboxBase(t, bin))
	add := layerVHD(t, dir, "hello", func(r string) {
		write(t, filepath.Join(r, "etc", "hello"), "hello from a layer\n")
	})
	del := layerVHD(t, dir, "delete", func(r string) { whiteout(t, filepath.Join(r, "deleted")) })
	ls := &LCOWLayers{Layers: []*LCOWLayer{{VHDPath: del}, {VHDPath: add}, {VHDPath: base}}, ScratchVHDPath: filepath.Join(dir, "sandbox.vhd")}
	rootfs, scratch, closer, err := MountLCOWLayers(ctx, "runc-test", ls, filepath.Join(dir, "c"), nil, WithScratchSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			closer.Release(ctx)
		}
	}()

	bundle := filepath.Join(dir, "bundle")
	state := filepath.Join(dir, "runc-state")
	os.Mkdir(bundle, 0o755)
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sh", "-c", "cat /etc/hello; test ! -e /deleted && echo ran > /tmp/written"}
	cfg["root"] = map[string]any{"path": rootfs, "readonly": false}
	cfg["hostname"] = "layers"
	if b, err = json.MarshalIndent(cfg, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	id := fmt.Sprintf("hcs-layers-%d", os.Getpid())
	cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if out, derr := exec.Command(runc, "--root", state, "delete", "--force", id).CombinedOutput(); derr != nil && !strings.Contains(string(out), "does not exist") {
		t.Errorf("runc delete: %v: %s", derr, out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("runc run: exit status %d\nstdout: %s\nstderr: %s", ee.ExitCode(), stdout.String(), stderr.String())
	} else if err != nil {
		t.Fatalf("runc run: %v\n%s", err, stderr.String())
	}
	if stdout.String() != "hello from a layer\n" {
		t.Errorf("output %q, want the second layer's /etc/hello", stdout.String())
	}
	if b, err := os.ReadFile(filepath.Join(scratch, UpperDir, "tmp", "written")); err != nil || string(b) != "ran\n" {
		t.Errorf("the container's write is not in the scratch's upper directory: %q, %v", b, err)
	}

	released = true
	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
}
