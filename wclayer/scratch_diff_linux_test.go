package wclayer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/basedisk"
)

// TestExpandScratchSizeDifferencing expands a scratch disk copied from a base
// layer's blank.vhdx, a differencing VHDX over blank-base.vhdx (how
// containerd makes Windows scratch disks): the child grows past its parent,
// its ext4 file system fills the new size, and the parent stays as it was.
func TestExpandScratchSizeDifferencing(t *testing.T) {
	needDisks(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	ctx := context.Background()
	baseDir := t.TempDir()
	base := filepath.Join(baseDir, basedisk.ContainerScratchTemplateBase)
	blank := filepath.Join(baseDir, basedisk.ContainerScratchTemplate)
	if err := basedisk.MakeBaseAndDiff(ctx, base, blank, basedisk.Options{Size: 64 << 20, Format: formatWith(host.Ext4, "")}, nil); err != nil {
		t.Fatal(err)
	}
	layer := t.TempDir()
	disk := filepath.Join(layer, ScratchDisk)
	b, err := os.ReadFile(blank)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := sum(t, base)

	if err := ExpandScratchSize(ctx, layer, 256<<20); err != nil {
		t.Fatal(err)
	}
	info, err := host.DetectDisk(disk)
	if err != nil || info.Format != host.FormatVHDXDifferencing || info.Size != 256<<20 {
		t.Fatalf("after expansion: %+v, %v; want a 256 MiB differencing VHDX", info, err)
	}
	if sum(t, base) != before {
		t.Error("expanding the child changed blank-base.vhdx")
	}
	if _, err := host.GetDisk(disk); err == nil {
		t.Error("disk left attached")
	}
	a, err := host.AttachDisk(ctx, disk, host.AttachOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer host.DetachDisk(ctx, a.Device)
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
	if !(bsize == "1024" && blocks == "262144") && !(bsize == "4096" && blocks == "65536") {
		t.Errorf("file system after expansion: %s blocks of %s bytes, want 256 MiB", blocks, bsize)
	}
	if out, err := exec.Command("e2fsck", "-fn", a.Device).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("clean")) {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
}

func sum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
