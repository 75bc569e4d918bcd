package wclayer

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// checkTemplate checks that child is a differencing VHDX of base (package
// vhd; 7zz tests the child through its parent), that base is a dynamic VHDX
// of size bytes passing qemu-img check, and that the chain holds fsys
// (e2fsck for ext4).
func checkTemplate(t *testing.T, base, child string, size int64, fsys diskfs.Filesystem) {
	t.Helper()
	d, err := vhd.Open(child, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Format() != vhd.FormatVHDX || d.Type() != vhd.Differencing || d.Size() != size {
		t.Errorf("%s: format %v type %v size %d", child, d.Format(), d.Type(), d.Size())
	}
	if p := d.Parent(); p == nil || p.Path() != base || p.Type() != vhd.Dynamic {
		t.Errorf("%s: parent %+v", child, p)
	}
	d.Close()
	if out, err := exec.Command("qemu-img", "check", base).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check %s: %s %v", base, out, err)
	}
	if _, err := exec.LookPath("7zz"); err == nil {
		cmd := exec.Command("7zz", "t", "-tVHDX", filepath.Base(child))
		cmd.Dir = filepath.Dir(child)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Everything is Ok") {
			t.Errorf("7zz t %s: %v\n%s", child, err, out)
		}
	}
	a, err := attach.Attach(context.Background(), child, attach.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer attach.Detach(context.Background(), a.Device)
	if got, err := diskfs.Probe(a.Device); got != fsys || err != nil {
		t.Errorf("%s holds %q (%v), want %q", child, got, err, fsys)
	}
	if fsys == diskfs.Ext4 {
		if out, err := exec.Command("e2fsck", "-fn", a.Device).CombinedOutput(); err != nil {
			t.Errorf("e2fsck through %s: %v\n%s", child, err, out)
		}
	}
}

func TestProcessBaseLayer(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	layer := filepath.Join(t.TempDir(), "base")
	importTar(t, layer, sampletar.Options{Seed: 21, Files: 5, Bytes: 8 << 10, UtilityVM: true}, nil)
	config := filepath.Join(layer, "Files", "Windows", "System32", "config")
	if err := os.MkdirAll(config, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"} {
		if err := os.WriteFile(filepath.Join(config, h), []byte("regf"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.RemoveAll(filepath.Join(layer, "Hives"))
	if err := ProcessBaseLayer(ctx, layer); err != nil {
		t.Fatal(err)
	}
	checkTemplate(t, filepath.Join(layer, "blank-base.vhdx"), filepath.Join(layer, "blank.vhdx"), 20<<30, diskfs.Ext4)
	var a, b unix.Stat_t
	if unix.Stat(filepath.Join(config, "SYSTEM"), &a) != nil || unix.Stat(filepath.Join(layer, "Hives", "SYSTEM_BASE"), &b) != nil || a.Ino != b.Ino {
		t.Error("Hives/SYSTEM_BASE is not a link to the image's SYSTEM hive")
	}
	// Again: the disks are replaced, the hives kept.
	if err := ProcessBaseLayer(ctx, layer); err != nil {
		t.Fatal(err)
	}

	uvm := filepath.Join(layer, "UtilityVM")
	err := ProcessUtilityVMImage(ctx, uvm)
	if !errors.Is(err, ErrWindowsOnly) || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), uvm) {
		t.Fatalf("ProcessUtilityVMImage: %v, want ErrWindowsOnly naming %s", err, uvm)
	}
	checkTemplate(t, filepath.Join(uvm, "SystemTemplateBase.vhdx"), filepath.Join(uvm, "SystemTemplate.vhdx"), 10<<30, diskfs.NTFS)

	// A base layer without registry hives is no Windows OS image: the disks
	// are made, and the error says what was not.
	plain := filepath.Join(t.TempDir(), "plain")
	importTar(t, plain, sampletar.Options{Seed: 22, Files: 3, Bytes: 4 << 10}, nil)
	if err := ProcessBaseLayer(ctx, plain); !errors.Is(err, ErrNoHives) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), plain) {
		t.Errorf("ProcessBaseLayer without hives: %v, want ErrNoHives naming %s", err, plain)
	}
	checkTemplate(t, filepath.Join(plain, "blank-base.vhdx"), filepath.Join(plain, "blank.vhdx"), 20<<30, diskfs.Ext4)
	if as, _ := attach.List(); len(as) > 0 {
		t.Errorf("attachments left: %+v", as)
	}
}

func TestProcessBaseLayerErrors(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	dir := t.TempDir()
	for _, f := range []func(context.Context, string) error{ProcessBaseLayer, ProcessUtilityVMImage} {
		err := f(ctx, dir)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
			t.Errorf("folder without Files: %v", err)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		t.Errorf("refused calls wrote %d entries", len(es))
	}
}
