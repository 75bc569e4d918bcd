package wclayer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func needDisks(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	if _, err := exec.LookPath("resize2fs"); err != nil {
		t.Skip("no resize2fs (e2fsprogs)")
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

func fixedVHD(t *testing.T, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "scratch.vhd")
	d, err := vhd.Create(p, vhd.CreateOptions{Type: vhd.Fixed, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	return p
}

func statfsBytes(t *testing.T, mp string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

// TestExpandScratchSizeMounted: the done-when check: expanding a mounted
// scratch shows the new size in df (statfs) at the same mount point.
func TestExpandScratchSizeMounted(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	disk := fixedVHD(t, t.TempDir(), 64<<20)
	a, err := attach.Attach(ctx, disk, attach.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer attach.Detach(ctx, a.Device)
	if err := diskfs.Format(ctx, a.Device, diskfs.FormatOptions{AssumeZeroed: true}); err != nil {
		t.Fatal(err)
	}
	mp := t.TempDir()
	if _, err := host.Apply(ctx, host.Plan{host.FilesystemMount("auto", a.Device, mp, false)}); err != nil {
		t.Fatal(err)
	}
	defer host.Unmount(mp)
	os.WriteFile(filepath.Join(mp, "kept"), []byte("scratch data"), 0o644)
	before := statfsBytes(t, mp)

	if err := ExpandScratchSize(ctx, disk, 300<<20+1); err != nil {
		t.Fatal(err)
	}
	after := statfsBytes(t, mp)
	if after < 4*before {
		t.Errorf("df size %d after expanding from %d (64 MiB) to 301 MiB", after, before)
	}
	df, _ := exec.Command("df", "-B1", "--output=size", mp).Output()
	t.Logf("statfs %d -> %d bytes; df: %s", before, after, strings.Join(strings.Fields(string(df)), " "))
	if b, err := os.ReadFile(filepath.Join(mp, "kept")); err != nil || string(b) != "scratch data" {
		t.Errorf("file after expansion: %q, %v", b, err)
	}
	got, err := attach.Get(disk)
	if err != nil || got.Size != 301<<20 {
		t.Errorf("attachment after expansion: %+v, %v (want size rounded up to 301 MiB)", got, err)
	}
	if err := host.Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if err := attach.Detach(ctx, disk); err != nil {
		t.Fatal(err)
	}
	if info, err := attach.Detect(disk); err != nil || info.Size != 301<<20 {
		t.Errorf("disk after expansion: %+v, %v", info, err)
	}
}

// TestExpandScratchSizeDetached grows a disk that is not attached, in a
// layer folder (sandbox.vhdx), and leaves it detached and consistent.
func TestExpandScratchSizeDetached(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	layer := t.TempDir()
	disk := fixedVHD(t, layer, 64<<20)
	if err := os.Rename(disk, filepath.Join(layer, ScratchDisk)); err != nil {
		t.Fatal(err)
	}
	disk = filepath.Join(layer, ScratchDisk)
	a, err := attach.Attach(ctx, disk, attach.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := diskfs.Format(ctx, a.Device, diskfs.FormatOptions{AssumeZeroed: true}); err != nil {
		t.Fatal(err)
	}
	attach.Detach(ctx, a.Device)

	if err := ExpandScratchSize(ctx, layer, 128<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := attach.Get(disk); !errors.Is(err, attach.ErrNotAttached) {
		t.Errorf("disk left attached: %v", err)
	}
	a, err = attach.Attach(ctx, disk, attach.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer attach.Detach(ctx, a.Device)
	out, err := exec.Command("dumpe2fs", "-h", a.Device).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	var blocks, bsize string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Block count:"); ok {
			blocks = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Block size:"); ok {
			bsize = strings.TrimSpace(v)
		}
	}
	if !(bsize == "1024" && blocks == "131072") && !(bsize == "4096" && blocks == "32768") {
		t.Errorf("file system after expansion: %s blocks of %s bytes, want 128 MiB", blocks, bsize)
	}
	if out, err := exec.Command("e2fsck", "-fn", a.Device).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
	// Asking for less than the disk has changes nothing.
	attach.Detach(ctx, a.Device)
	if err := ExpandScratchSize(ctx, layer, 1<<20); err != nil {
		t.Fatal(err)
	}
	if info, _ := attach.Detect(disk); info.Size != 128<<20 {
		t.Errorf("size %d after a smaller request", info.Size)
	}
}

func TestExpandScratchSizeErrors(t *testing.T) {
	needDisks(t)
	ctx := context.Background()
	if err := ExpandScratchSize(ctx, t.TempDir(), 1<<30); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("layer without a scratch disk: %v", err)
	}
	disk := fixedVHD(t, t.TempDir(), 64<<20)
	if err := ExpandScratchSize(ctx, disk, 0); err == nil {
		t.Error("size 0 accepted")
	}
}
