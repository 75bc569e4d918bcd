package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/internal/compress"
)

// TestCIMMount runs the built binary, so that the FUSE helper is hcs itself
// re-executed, as in real use.
func TestCIMMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root for FUSE with allow_other")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	bin := hcsBinary(t)
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	layer := filepath.Join(dir, "1")
	tarFile := writeFile(t, dir, "l.tar", compressBytes(t, sampleTar(t), compress.None))
	wantCode(t, hcs(t, nil, "cim", "create", "-f", tarFile, layer), exitOK)

	run := func(args ...string) (string, int) {
		out, err := exec.Command(bin, args...).Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run("-o", "json", "cim", "mount", layer, "ctr-1")
	if code != 0 {
		t.Fatalf("mount: exit %d: %s", code, out)
	}
	var res cimMountResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.PID == 0 || res.VolumeGUID == "" ||
		res.Mountpoint != filepath.Join(filepath.Join(os.Getenv("HOSTCOMPUTE_STATE_DIR"), "cim"), res.VolumeGUID) {
		t.Fatalf("mount -o json: %+v, %v", res, err)
	}
	// The mount outlives the command.
	ref := hcs(t, nil, "cim", "cat", layer, "Files/special/streams.txt")
	wantCode(t, ref, exitOK)
	got, err := os.ReadFile(filepath.Join(res.Mountpoint, "Files", "special", "streams.txt"))
	if err != nil || string(got) != ref.stdout {
		t.Errorf("reading through the mount: %q, %v", got, err)
	}
	if out, code := run("cim", "mount", layer, "ctr-1"); code != 0 || out != res.Mountpoint+"\n" {
		t.Errorf("mounting again: exit %d: %q", code, out)
	}
	other := filepath.Join(dir, "2")
	wantCode(t, hcs(t, nil, "cim", "create", "-f", tarFile, "--parent", layer, other), exitOK)
	if _, code := run("cim", "mount", other, "ctr-1"); code != exitExists {
		t.Errorf("mounting another CIM for the container: exit %d, want %d", code, exitExists)
	}
	if _, code := run("cim", "unmount", other, "ctr-1"); code != exitNotFound {
		t.Errorf("unmounting the wrong CIM: exit %d, want %d", code, exitNotFound)
	}
	if out, code := run("cim", "unmount", layer, "ctr-1"); code != 0 {
		t.Errorf("unmount: exit %d: %s", code, out)
	}
	if _, err := os.Stat(res.Mountpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point left: %v", err)
	}
	if _, code := run("cim", "unmount", layer, "ctr-1"); code != exitNotFound {
		t.Errorf("second unmount: exit %d, want %d", code, exitNotFound)
	}

	// --target, and --container cleanup.
	target := t.TempDir()
	if out, code := run("cim", "mount", "--target", target, other); code != 0 || out != target+"\n" {
		t.Fatalf("mount --target: exit %d: %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(target, "Files", "special")); err != nil {
		t.Errorf("mounted tree: %v", err)
	}
	if _, code := run("cim", "mount", "--target", target, other); code != exitExists {
		t.Errorf("second mount on the target: exit %d, want %d", code, exitExists)
	}
	if out, code := run("cim", "unmount", "--target", target); code != 0 {
		t.Errorf("unmount --target: exit %d: %s", code, out)
	}
	if _, code := run("cim", "unmount", "--target", target); code != exitNotFound {
		t.Errorf("second unmount --target: exit %d, want %d", code, exitNotFound)
	}
	if _, code := run("cim", "mount", other, "ctr-2"); code != 0 {
		t.Fatalf("mount ctr-2: exit %d", code)
	}
	if out, code := run("cim", "unmount", "--container", "ctr-2"); code != 0 {
		t.Errorf("unmount --container: exit %d: %s", code, out)
	}
	if out, code := run("cim", "unmount", "--container", "ctr-2"); code != 0 {
		t.Errorf("unmount --container without mounts: exit %d: %s", code, out)
	}
	if _, code := run("cim", "mount", filepath.Join(dir, "missing.cim"), "ctr-3"); code != exitNotFound {
		t.Errorf("mounting a missing CIM: exit %d, want %d", code, exitNotFound)
	}
	if _, code := run("cim", "mount", layer); code != exitUsage {
		t.Errorf("mount without a container: exit %d, want %d", code, exitUsage)
	}
}
