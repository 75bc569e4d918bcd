package hostcompute

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

// TestMain lets the test binary serve as the FUSE helper of attached VHDX disks
// and as the monitor of containers, whose state goes to a directory of its own.
func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	MaybeRunHelper()
	os.Exit(runWithComputeState(m))
}

// TestSandboxLayerLifecycle drives the DriverInfo forms: CreateSandboxLayer
// (default size, chain from the parent id), ExpandSandboxSize, then activate,
// prepare and their inverses.
func TestSandboxLayerLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	state := t.TempDir()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", state)
	state = filepath.Join(state, "layers")
	info := DriverInfo{HomeDir: t.TempDir()}
	var buf bytes.Buffer
	if err := sampletar.Write(&buf, sampletar.Options{Seed: 7, Files: 5, Bytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(info.HomeDir, "base")
	if _, err := ociwclayer.ImportLayerFromTar(context.Background(), &buf, base, nil); err != nil {
		t.Fatal(err)
	}
	if err := CreateSandboxLayer(info, "sb", "base", nil); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(info.HomeDir, "sb", "sandbox.vhdx")
	if out, err := exec.Command("qemu-img", "info", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "virtual size: 20 GiB") {
		t.Fatalf("qemu-img info: %s %v", out, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(disk, &st); err != nil || st.Blocks*512 > 128<<20 {
		t.Errorf("the 20 GiB sandbox takes %d bytes on the host (%v); it should be sparse", st.Blocks*512, err)
	}
	t.Logf("sandbox.vhdx of 20 GiB with ext4 takes %d KiB on the host", st.Blocks/2)
	if err := ExpandSandboxSize(info, "sb", 21<<30); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "info", disk).CombinedOutput(); err != nil || !strings.Contains(string(out), "virtual size: 21 GiB") {
		t.Fatalf("qemu-img info after expansion: %s %v", out, err)
	}
	if err := ActivateLayer(info, "sb"); err != nil {
		t.Fatal(err)
	}
	if err := PrepareLayer(info, "sb", []string{base}); err != nil {
		t.Fatal(err)
	}
	p, err := GetLayerMountPath(info, "sb")
	if err != nil || !strings.HasPrefix(p, state) {
		t.Fatalf("mount path %q %v", p, err)
	}
	if ms, _ := mountinfo.Lookup(p); len(ms) != 1 || ms[0].FSType != "overlay" {
		t.Errorf("union mounts: %+v", ms)
	}
	if err := DeactivateLayer(info, "sb"); err == nil {
		t.Error("deactivate of a prepared layer succeeded")
	}
	if err := UnprepareLayer(info, "sb"); err != nil {
		t.Fatal(err)
	}
	if err := DeactivateLayer(info, "sb"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := mountinfo.Read(); len(mountinfo.Under(ms, state)) > 0 {
		t.Error("mounts left")
	}
	if as, _ := attach.List(); len(as) > 0 {
		t.Errorf("attachments left: %+v", as)
	}
}
