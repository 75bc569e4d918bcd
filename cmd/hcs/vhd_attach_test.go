package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// TestVHDAttachDetach runs the built binary, so that the raw view helper is
// hcs itself re-executed, as in real use.
func TestVHDAttachDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("attach needs root for loop devices and FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	bin := hcsBinary(t)
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
	disk := filepath.Join(t.TempDir(), "disk.vhd")
	d, err := vhd.Create(disk, vhd.CreateOptions{Type: vhd.Dynamic, Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	d.WriteAt([]byte("hello from the virtual disk"), 1<<20)
	d.Close()

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
	out, code := run("-o", "json", "vhd", "attach", "--read-only", disk)
	if code != 0 {
		t.Fatalf("attach: exit %d: %s", code, out)
	}
	var at attach.Attachment
	if err := json.Unmarshal([]byte(out), &at); err != nil {
		t.Fatalf("attach -o json: %v: %s", err, out)
	}
	if !strings.HasPrefix(at.Device, "/dev/loop") || !at.RawView || !at.ReadOnly || at.Size != 16<<20 {
		t.Errorf("attachment %+v", at)
	}
	// The device outlives the command that made it.
	f, err := os.Open(at.Device)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 27)
	f.ReadAt(b, 1<<20)
	f.Close()
	if string(b) != "hello from the virtual disk" {
		t.Errorf("read %q through %s", b, at.Device)
	}
	if _, code := run("vhd", "attach", disk); code != exitExists {
		t.Errorf("second attach: exit %d, want %d", code, exitExists)
	}
	if out, code := run("vhd", "detach", disk); code != 0 || !strings.Contains(out, at.Device) {
		t.Errorf("detach: exit %d: %s", code, out)
	}
	if _, code := run("vhd", "detach", at.Device); code != exitNotFound {
		t.Errorf("second detach: exit %d, want %d", code, exitNotFound)
	}
	if out, code := run("vhd", "attach", filepath.Join(t.TempDir(), "missing.vhd")); code != exitNotFound {
		t.Errorf("attach of a missing disk: exit %d: %s", code, out)
	}
}
