package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// ext4LayerVHD makes an ext4 image of the files (name → content) with a fixed VHD
// footer.
func ext4LayerVHD(t *testing.T, path string, files map[string]string) {
	t.Helper()
	src := path + ".src"
	for name, data := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", src, path, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if err := vhd.AppendFixedFooterFile(path, time.Unix(0, 0), [16]byte{2}); err != nil {
		t.Fatal(err)
	}
}

// privateState gives the commands that t runs their own internal/attach and
// internal/fusefs state, apart from other test binaries running at the same time.
func privateState(t *testing.T) {
	t.Helper()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

// TestLayerMountUnmount runs the built binary: the mounts must outlive the mount
// command, and unmount must find them in the kernel's tables alone.
func TestLayerMountUnmount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("layer mount needs root for loop devices and mounts")
	}
	privateState(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not found (e2fsprogs)")
	}
	bin := hcsBinary(t)
	dir := t.TempDir()
	t.Cleanup(func() { mount.UnmountAll(dir, true) })
	base, top := filepath.Join(dir, "base.vhd"), filepath.Join(dir, "top.vhd")
	ext4LayerVHD(t, base, map[string]string{"etc/os": "base", "etc/hello": "old"})
	ext4LayerVHD(t, top, map[string]string{"etc/hello": "hello"})
	scratch, target := filepath.Join(dir, "scratch.vhd"), filepath.Join(dir, "ctr")

	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out) + string(ee.Stderr), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run("layer", "mount", "--scratch", scratch, "--scratch-size", "1000", "--target", target, top); code != exitUsage {
		t.Errorf("bad --scratch-size: exit %d, want %d: %s", code, exitUsage, out)
	}
	out, code := run("layer", "mount", "-o", "json", "--scratch", scratch, "--scratch-size", "64M", "--target", target, top, base)
	if code != 0 {
		t.Fatalf("mount: exit %d: %s", code, out)
	}
	var res layerMountResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("mount -o json: %v: %q", err, out)
	}
	if res.Rootfs != filepath.Join(target, "rootfs") || res.Scratch != target {
		t.Errorf("mount result %+v", res)
	}
	// The command has exited; its mounts are still there.
	for name, want := range map[string]string{"etc/hello": "hello", "etc/os": "base"} {
		if b, err := os.ReadFile(filepath.Join(res.Rootfs, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	if st, err := os.Stat(scratch); err != nil || st.Size() != 64<<20+512 {
		t.Errorf("scratch disk: %v, %v; want a 64 MiB fixed VHD", st, err)
	}
	if out, code := run("layer", "mount", "--scratch", scratch, "--target", target, top, base); code != exitExists {
		t.Errorf("second mount: exit %d, want %d: %s", code, exitExists, out)
	}

	f, err := os.Open(filepath.Join(res.Rootfs, "etc", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if out, code := run("layer", "unmount", target); code != exitFailure || !strings.Contains(out, "--lazy") {
		t.Errorf("unmount of a busy union: exit %d, want %d with a hint: %s", code, exitFailure, out)
	}
	f.Close()
	out, code = run("layer", "unmount", "-o", "json", target)
	if code != 0 {
		t.Fatalf("unmount: exit %d: %s", code, out)
	}
	var ures layerUnmountResult
	if err := json.Unmarshal([]byte(out), &ures); err != nil {
		t.Fatalf("unmount -o json: %v: %q", err, out)
	}
	if len(ures.Unmounted) != 4 || len(ures.Detached) != 3 {
		t.Errorf("unmount result %+v: want 4 mounts (union, 2 layers, scratch) and 3 devices", ures)
	}
	infos, _ := mountinfo.Read()
	if m := mountinfo.Under(infos, dir); len(m) != 0 {
		t.Errorf("left mounted: %+v", m)
	}
	if devs, err := loop.FindUnder(dir); err != nil || len(devs) != 0 {
		t.Errorf("left attached: %v, %v", devs, err)
	}
	if out, code := run("layer", "unmount", target); code != exitNotFound {
		t.Errorf("unmount of nothing: exit %d, want %d: %s", code, exitNotFound, out)
	}
	// The scratch keeps the union's writes; a second mount finds the same state.
	if out, code := run("layer", "mount", "--scratch", scratch, "--target", target, top, base); code != 0 {
		t.Fatalf("mount again: exit %d: %s", code, out)
	}
	if out, code := run("layer", "unmount", target); code != 0 {
		t.Fatalf("unmount again: exit %d: %s", code, out)
	}
}

// TestLayerMountCrash kills hcs layer mount at points spread over its run and checks
// that hcs layer unmount, or the next mount, cleans up what it left.
func TestLayerMountCrash(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("layer mount needs root for loop devices and mounts")
	}
	privateState(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not found (e2fsprogs)")
	}
	if testing.Short() {
		t.Skip("crash points: skipped in -short mode")
	}
	bin := hcsBinary(t)
	dir := t.TempDir()
	t.Cleanup(func() { mount.UnmountAll(dir, true) })
	var args []string
	for i := range 12 {
		l := filepath.Join(dir, fmt.Sprintf("l%02d.vhd", i))
		ext4LayerVHD(t, l, map[string]string{fmt.Sprint("f", i): "x"})
		args = append(args, l)
	}
	target := filepath.Join(dir, "ctr")
	mountArgs := func(scratch string) []string {
		return append([]string{"layer", "mount", "--scratch", scratch, "--scratch-size", "256M", "--target", target}, args...)
	}
	unmountIfMounted := func() {
		t.Helper()
		infos, _ := mountinfo.Read()
		if len(mountinfo.Under(infos, target)) == 0 {
			return
		}
		if out, err := exec.Command(bin, "layer", "unmount", target).CombinedOutput(); err != nil {
			t.Fatalf("unmount after a crash: %v\n%s", err, out)
		}
	}
	nothingLeft := func() {
		t.Helper()
		infos, _ := mountinfo.Read()
		if m := mountinfo.Under(infos, dir); len(m) != 0 {
			t.Fatalf("left mounted: %+v", m)
		}
		// The devices of a killed mount are autoclear: they go when their
		// last user does, which another process that has them open for a
		// moment (losetup -a opens every attached device) can delay. The
		// wait is generous for a loaded machine and ends as soon as they
		// are gone.
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			devs, err := loop.FindUnder(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("left attached: %v", devs)
			}
		}
	}

	start := time.Now()
	if out, err := exec.Command(bin, mountArgs(filepath.Join(dir, "first.vhd"))...).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	full := time.Since(start)
	unmountIfMounted()
	nothingLeft()
	t.Logf("a full mount takes %v", full)

	for k := 1; k <= 6; k++ {
		delay := full * time.Duration(k) / 7
		scratch := filepath.Join(dir, fmt.Sprintf("crash%d.vhd", k))
		cmd := exec.Command(bin, mountArgs(scratch)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		cmd.Wait()
		t0 := time.Now()
		unmountIfMounted()
		nothingLeft()
		t.Logf("crash at %v: cleaned in %v", delay, time.Since(t0))
		// The next mount starts clean, also with the same scratch path.
		if out, err := exec.Command(bin, mountArgs(scratch)...).CombinedOutput(); err != nil {
			t.Fatalf("mount after a crash at %v: %v\n%s", delay, err, out)
		}
		unmountIfMounted()
		nothingLeft()
		if tmps, _ := filepath.Glob(filepath.Join(dir, ".*hcs-scratch-*")); len(tmps) != 0 {
			t.Errorf("temporary scratch files left after a crash at %v: %q", delay, tmps)
		}
	}
}
