package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunImage builds a Linux image on scratch from a busybox tar (hcs image
// append) and runs it with hcs run --image: the container sees the image's files,
// its exit status is the command's, and the store keeps only the image's layer
// (the view read for the layer directories is gone).
func TestRunImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	bin := hcsBinary(t)
	dir := busyboxDir(t)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "hello"), []byte("hello from an image\n"), 0o644)
	layer := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "--owner=0", "--group=0", "-C", dir, "-cf", layer, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	root := filepath.Join(t.TempDir(), "store")
	state := t.TempDir()
	hcs := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HOSTCOMPUTE_STATE_DIR="+state)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	if _, errOut, code := hcs("image", "--root", root, "append", "-q", "--base", "scratch", "--platform", "linux/amd64", "--layer", layer, "-t", "test/bb:1"); code != 0 {
		t.Fatalf("append: exit %d: %s", code, errOut)
	}
	out, errOut, code := hcs("run", "--root", root, "--image", "test/bb:1", "--", "sh", "-c", "cat /etc/hello; exit 5")
	if out != "hello from an image\n" || code != 5 {
		t.Errorf("run --image: out %q err %q code %d", out, errOut, code)
	}
	if _, _, code := hcs("run", "--root", root, "--image", "test/none:1", "--", "true"); code != exitNotFound {
		t.Errorf("run --image of a missing image: exit %d, want %d", code, exitNotFound)
	}
	out, errOut, code = hcs("store", "--root", root, "ls")
	if n := strings.Count(strings.TrimSpace(out), "\n"); code != 0 || n != 1 || strings.Contains(out, "view") {
		t.Errorf("store after run (exit %d): want the image's one layer:\n%s%s", code, out, errOut)
	}
}
