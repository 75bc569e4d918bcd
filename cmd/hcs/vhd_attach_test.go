package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	var at Disk
	if err := json.Unmarshal([]byte(out), &at); err != nil {
		t.Fatalf("attach -o json: %v: %s", err, out)
	}
	if !strings.HasPrefix(at.Device, "/dev/loop") || at.Format != "vhd-dynamic" || !at.ReadOnly || at.VirtualSize != 16<<20 || at.File != disk {
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

	// Formats by content: a VHD whose footer is cut short is damaged, not raw;
	// a blank file is raw only with --format raw; --format must match.
	dir := t.TempDir()
	fixed := filepath.Join(dir, "fixed.vhd")
	if d, err := vhd.Create(fixed, vhd.CreateOptions{Type: vhd.Fixed, Size: 4 << 20}); err != nil {
		t.Fatal(err)
	} else {
		d.Close()
	}
	os.Truncate(fixed, 4<<20+512-100)
	if out, code := run("vhd", "attach", fixed); code != exitInvalidInput {
		t.Errorf("attach of a VHD with a truncated footer: exit %d, want %d: %s", code, exitInvalidInput, out)
	}
	blank := filepath.Join(dir, "blank.img")
	os.WriteFile(blank, make([]byte, 4<<20), 0o644)
	if out, code := run("vhd", "attach", blank); code != exitInvalidInput {
		t.Errorf("attach of a blank file without --format raw: exit %d, want %d: %s", code, exitInvalidInput, out)
	}
	if out, code := run("vhd", "attach", "--format", "vhdx", disk); code != exitInvalidInput {
		t.Errorf("attach --format vhdx of a VHD: exit %d, want %d: %s", code, exitInvalidInput, out)
	}
	out, code = run("-o", "json", "vhd", "attach", "--format", "raw", blank)
	if code != 0 {
		t.Fatalf("attach --format raw: exit %d: %s", code, out)
	}
	var raw Disk
	json.Unmarshal([]byte(out), &raw)
	if raw.Format != "raw" || raw.VirtualSize != 4<<20 {
		t.Errorf("raw attachment %+v", raw)
	}
	out, code = run("-o", "json", "vhd", "detach", raw.Device)
	var det Disk
	if err := json.Unmarshal([]byte(out), &det); code != 0 || err != nil || det != raw {
		t.Errorf("detach -o json: exit %d: %s, want %+v", code, out, raw)
	}
}

// TestVHDFormatByContent: convert refuses what it cannot recognise unless told
// it is raw, refuses a damaged VHD, and create and convert make the format
// their file name says.
func TestVHDFormatByContent(t *testing.T) {
	dir := t.TempDir()
	blank := writeFile(t, dir, "blank.bin", make([]byte, 2<<20))
	wantCode(t, hcs(t, nil, "vhd", "convert", blank, filepath.Join(dir, "a.vhd")), exitInvalidInput)
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", blank, filepath.Join(dir, "a.vhdx")), exitOK)
	if d, err := vhd.Open(filepath.Join(dir, "a.vhdx"), true); err != nil || d.Format() != vhd.FormatVHDX {
		t.Errorf("convert to a.vhdx: %v", err)
	} else {
		d.Close()
	}
	fixed := filepath.Join(dir, "fixed.vhd")
	wantCode(t, hcs(t, nil, "vhd", "create", "--type", "fixed", "--size", "2M", fixed), exitOK)
	os.Truncate(fixed, 2<<20+512-100)
	r := hcs(t, nil, "vhd", "convert", "--to", "raw", fixed, filepath.Join(dir, "out.img"))
	wantCode(t, r, exitInvalidInput)
	if !strings.Contains(r.stderr, "footer") {
		t.Errorf("convert of a truncated VHD: %s", r.stderr)
	}
	for name, want := range map[string]vhd.Format{"new.vhdx": vhd.FormatVHDX, "new.vhd": vhd.FormatVHD} {
		p := filepath.Join(dir, name)
		wantCode(t, hcs(t, nil, "vhd", "create", "--size", "8M", p), exitOK)
		if d, err := vhd.Open(p, true); err != nil || d.Format() != want {
			t.Errorf("vhd create %s: %v, want %v", name, err, want)
		} else {
			d.Close()
		}
	}
	wantCode(t, hcs(t, nil, "vhd", "create", "--size", "8M", filepath.Join(dir, "noext")), exitUsage)
	wantCode(t, hcs(t, nil, "vhd", "create", "--format", "vhd", "--size", "8M", filepath.Join(dir, "forced.vhdx")), exitOK)
	if d, err := vhd.Open(filepath.Join(dir, "forced.vhdx"), true); err != nil || d.Format() != vhd.FormatVHD {
		t.Errorf("--format vhd: %v", err)
	} else {
		d.Close()
	}
	// Nothing staged is left.
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
}
