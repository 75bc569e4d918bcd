package computestorage

import (
	"context"
	"errors"
	"github.com/hostcompute/hostcompute/internal/basedisk"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// checkChain checks that diff is a differencing VHDX over base, of size
// bytes, holding fsys, with the oracles at hand.
func checkChain(t *testing.T, base, diff string, size int64, fsys diskfs.Filesystem) {
	t.Helper()
	d, err := vhd.Open(diff, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Format() != vhd.FormatVHDX || d.Type() != vhd.Differencing || d.Size() != size || d.BlockSize() != 1<<20 {
		t.Errorf("child: format %v type %v size %d block %d", d.Format(), d.Type(), d.Size(), d.BlockSize())
	}
	if p := d.Parent(); p == nil || p.Path() != base || p.Type() != vhd.Dynamic || p.BlockSize() != 1<<20 {
		t.Errorf("child's parent: %+v", p)
	}
	d.Close()
	var st syscall.Stat_t
	syscall.Stat(base, &st)
	if st.Blocks*512 > 128<<20 {
		t.Errorf("base takes %d bytes on the host; it should be sparse", st.Blocks*512)
	}
	if _, err := exec.LookPath("qemu-img"); err == nil {
		if out, err := exec.Command("qemu-img", "check", base).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check base: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("7zz"); err == nil {
		cmd := exec.Command("7zz", "t", "-tVHDX", filepath.Base(diff))
		cmd.Dir = filepath.Dir(diff)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Everything is Ok") {
			t.Errorf("7zz t child: %v\n%s", err, out)
		}
	}
	a, err := attach.Attach(context.Background(), diff, attach.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer attach.Detach(context.Background(), a.Device)
	if got, err := diskfs.Probe(a.Device); got != fsys || err != nil {
		t.Errorf("file system through the child: %q, %v; want %q", got, err, fsys)
	}
	if fsys == diskfs.Ext4 {
		if out, err := exec.Command("e2fsck", "-fn", a.Device).CombinedOutput(); err != nil {
			t.Errorf("e2fsck through the child: %v\n%s", err, out)
		}
	}
}

func TestSetupContainerBaseLayer(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	layer := baseLayer(t)
	base := filepath.Join(layer, ContainerScratchTemplateBase)
	diff := filepath.Join(layer, ContainerScratchTemplate)
	for i := 0; i < 2; i++ { // the second run replaces everything
		if err := SetupContainerBaseLayer(ctx, layer, base, diff, 1); err != nil {
			t.Fatal(err)
		}
	}
	checkChain(t, base, diff, 1<<30, diskfs.Ext4)
	if b, err := os.ReadFile(filepath.Join(layer, "Hives", "SYSTEM_BASE")); err != nil || string(b) != "regf SYSTEM" {
		t.Errorf("Hives/SYSTEM_BASE: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(layer, LayoutFile)); err != nil {
		t.Error(err)
	}
	entries, _ := os.ReadDir(layer)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	if l, _ := attach.List(); len(l) != 0 {
		t.Errorf("attachments left: %+v", l)
	}
}

func TestSetupContainerBaseLayerFailure(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	layer := baseLayer(t)
	os.Remove(filepath.Join(layer, "Files", "Windows", "System32", "config", "SAM"))
	base := filepath.Join(layer, ContainerScratchTemplateBase)
	diff := filepath.Join(layer, ContainerScratchTemplate)
	os.WriteFile(diff, []byte("an old child"), 0o644)
	err := SetupContainerBaseLayer(ctx, layer, base, diff, 1)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("setup without the SAM hive: %v", err)
	}
	for _, p := range []string{base, diff, basedisk.TempName(base), basedisk.TempName(diff)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after a failed setup", p)
		}
	}
	if err := SetupContainerBaseLayer(ctx, layer, base, base, 1); err == nil {
		t.Error("base and child the same file accepted")
	}
	if err := SetupContainerBaseLayer(ctx, layer, base, diff, 0); err == nil {
		t.Error("size 0 accepted")
	}
}

func TestSetupUtilityVMBaseLayer(t *testing.T) {
	needDisks(t)
	if _, err := exec.LookPath("mkntfs"); err != nil {
		t.Skip("no mkntfs")
	}
	uvm := filepath.Join(t.TempDir(), "UtilityVM")
	os.MkdirAll(filepath.Join(uvm, "Files"), 0o755)
	base := filepath.Join(uvm, UtilityVMTemplateBase)
	diff := filepath.Join(uvm, UtilityVMTemplate)
	if err := SetupUtilityVMBaseLayer(context.Background(), uvm, base, diff, 1); !errors.Is(err, ErrWindowsOnly) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("SetupUtilityVMBaseLayer: %v, want ErrWindowsOnly once the disks are made", err)
	}
	checkChain(t, base, diff, 1<<30, diskfs.NTFS)
	if err := SetupUtilityVMBaseLayer(context.Background(), filepath.Join(uvm, "missing"), base, diff, 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing UtilityVM folder: %v", err)
	}
}
