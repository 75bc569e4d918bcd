package computestorage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func needDisks(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

func newVHDX(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sandbox.vhdx")
	if err := vhd.CreateVHDX(p, vhd.VHDXCreateOptions{Size: size, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	return p
}

func mountedAt(t *testing.T, mp string) bool {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Mountpoint == mp {
			return true
		}
	}
	return false
}

// TestFormatAndMountVHDX formats a dynamic VHDX with ext4 (the default),
// mounts it through GetLayerVhdMountPath, writes, closes the handle (which
// unmounts and detaches), and finds the file again through a new handle.
func TestFormatAndMountVHDX(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	disk := newVHDX(t, 64<<20)
	d, err := OpenVirtualDisk(disk, OpenVirtualDiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := FormatWritableLayerVhd(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := attach.Get(disk); !errors.Is(err, attach.ErrNotAttached) {
		t.Errorf("formatting left the disk attached: %v", err)
	}
	mp, err := GetLayerVhdMountPath(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !mountedAt(t, mp) {
		t.Fatalf("%s is not a mount", mp)
	}
	if again, err := GetLayerVhdMountPath(ctx, d); err != nil || again != mp {
		t.Errorf("second GetLayerVhdMountPath: %q, %v; want %q", again, err, mp)
	}
	// Another handle finds the same mount from mountinfo.
	other, _ := OpenVirtualDisk(disk, OpenVirtualDiskOptions{})
	if p, err := GetLayerVhdMountPath(ctx, other); err != nil || p != mp {
		t.Errorf("GetLayerVhdMountPath through another handle: %q, %v", p, err)
	}
	if err := FormatWritableLayerVhd(ctx, other); !errors.Is(err, attach.ErrBusy) {
		t.Errorf("formatting a mounted disk: %v, want ErrBusy", err)
	}
	other.Close() // it made nothing: nothing is undone
	if !mountedAt(t, mp) {
		t.Fatal("closing another handle unmounted the disk")
	}
	if err := os.WriteFile(filepath.Join(mp, "layer-file"), []byte("written in the scratch"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if mountedAt(t, mp) {
		t.Error("Close left the mount")
	}
	if _, err := attach.Get(disk); !errors.Is(err, attach.ErrNotAttached) {
		t.Errorf("Close left the disk attached: %v", err)
	}
	if _, err := GetLayerVhdMountPath(ctx, d); err == nil {
		t.Error("GetLayerVhdMountPath on a closed handle succeeded")
	}
	if _, err := exec.LookPath("qemu-img"); err == nil {
		if out, err := exec.Command("qemu-img", "check", "-f", "vhdx", disk).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check: %v\n%s", err, out)
		}
	}
	ro, _ := OpenVirtualDisk(disk, OpenVirtualDiskOptions{ReadOnly: true})
	defer ro.Close()
	if err := FormatWritableLayerVhd(ctx, ro); !errors.Is(err, os.ErrPermission) {
		t.Errorf("formatting through a read-only handle: %v", err)
	}
	mp, err = GetLayerVhdMountPath(ctx, ro)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "layer-file")); err != nil || !bytes.Equal(b, []byte("written in the scratch")) {
		t.Errorf("file through a new handle: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mp, "x"), nil, 0o644); err == nil {
		t.Error("wrote to a read-only mount")
	}
}

func TestFormatNTFS(t *testing.T) {
	needDisks(t)
	if _, err := exec.LookPath("mkntfs"); err != nil {
		t.Skip("no mkntfs")
	}
	ctx := context.Background()
	d, err := OpenVirtualDisk(newVHDX(t, 64<<20), OpenVirtualDiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := FormatVirtualDisk(ctx, d, FormatOptions{Filesystem: FilesystemNTFS, Label: "Scratch", NewDisk: true}); err != nil {
		t.Fatal(err)
	}
	mp, err := GetLayerVhdMountPath(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := attach.Get(d.Path())
	if fs, _ := diskfs.Probe(a.Device); fs != diskfs.NTFS {
		t.Errorf("probed %q, want ntfs", fs)
	}
	if err := os.WriteFile(filepath.Join(mp, "hello.txt"), []byte("ntfs"), 0o644); err != nil {
		t.Error(err)
	}
	if err := FormatVirtualDisk(ctx, d, FormatOptions{Filesystem: "xfs"}); err == nil {
		t.Error("unknown file system accepted")
	}
}

func TestOpenVirtualDiskErrors(t *testing.T) {
	if _, err := OpenVirtualDisk(filepath.Join(t.TempDir(), "missing.vhdx"), OpenVirtualDiskOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing disk: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.vhdx")
	os.WriteFile(bad, append([]byte("vhdxfile"), make([]byte, 300<<10)...), 0o644)
	if _, err := OpenVirtualDisk(bad, OpenVirtualDiskOptions{}); !errors.Is(err, vhd.ErrInvalidFormat) {
		t.Errorf("corrupt VHDX: %v", err)
	}
}
