package diskfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/fusefs"
)

func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	os.Exit(m.Run())
}

// attached attaches a new sparse raw disk of size bytes and detaches it at
// the end of the test.
func attached(t *testing.T, size int64) *attach.Attachment {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	t.Setenv("HOSTCOMPUTE_ATTACH_STATE_DIR", t.TempDir())
	t.Setenv("HOSTCOMPUTE_FUSE_STATE_DIR", t.TempDir())
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	a, err := attach.Attach(context.Background(), p, attach.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := attach.Detach(context.Background(), a.Device); err != nil {
			t.Error(err)
		}
	})
	return a
}

func statfsSize(t *testing.T, mp string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func TestExt4FormatMountGrowMounted(t *testing.T) {
	a := attached(t, 64<<20)
	ctx := context.Background()
	if fs, _ := Probe(a.Device); fs != None {
		t.Errorf("Probe of an empty disk: %q", fs)
	}
	if err := Format(ctx, a.Device, FormatOptions{Label: "scratch", AssumeZeroed: true}); err != nil {
		t.Fatal(err)
	}
	if fs, err := Probe(a.Device); fs != Ext4 || err != nil {
		t.Fatalf("Probe: %q, %v", fs, err)
	}
	mp := t.TempDir()
	if err := Mount(ctx, a.Device, mp, false); err != nil {
		t.Fatal(err)
	}
	defer Unmount(mp)
	if err := os.WriteFile(filepath.Join(mp, "before"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := statfsSize(t, mp)
	if _, err := attach.Grow(ctx, a.Device, 256<<20); err != nil {
		t.Fatal(err)
	}
	online := hasCapability(unix.CAP_SYS_RESOURCE)
	if !online {
		t.Log("no CAP_SYS_RESOURCE: the kernel refuses online ext4 growth here; testing the remount path")
		if err := Grow(ctx, a.Device, true); !errors.Is(err, ErrOnlineNotPermitted) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("online Grow without CAP_SYS_RESOURCE: %v", err)
		}
		// A busy mount is left as it was.
		f, err := os.Open(filepath.Join(mp, "before"))
		if err != nil {
			t.Fatal(err)
		}
		if err := GrowInPlace(ctx, a.Device); !errors.Is(err, unix.EBUSY) {
			t.Errorf("GrowInPlace with an open file: %v, want EBUSY", err)
		}
		f.Close()
		if statfsSize(t, mp) != before {
			t.Error("a refused growth changed the file system")
		}
	}
	if !online {
		// Past our own check, the kernel's refusal (what a process with the
		// capability only in a user namespace gets) is classed the same.
		capabilityCheck = func(int) bool { return true }
		err := Grow(ctx, a.Device, true)
		capabilityCheck = hasCapability
		if !errors.Is(err, ErrOnlineNotPermitted) {
			t.Errorf("online Grow refused by the kernel: %v, want ErrOnlineNotPermitted", err)
		}
	}
	if err := GrowInPlace(ctx, a.Device); err != nil {
		t.Fatal(err)
	}
	after := statfsSize(t, mp)
	if after < 3*before {
		t.Errorf("statfs size %d after growing from %d to 256 MiB", after, before)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "before")); err != nil || string(b) != "kept" {
		t.Errorf("file after growth: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mp, "f"), make([]byte, 100<<20), 0o644); err != nil {
		t.Errorf("writing 100 MiB after growth: %v", err)
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", a.Device).CombinedOutput(); err != nil {
		t.Errorf("e2fsck after growth: %v\n%s", err, out)
	}
}

func TestNTFSFormatGrowOffline(t *testing.T) {
	if _, err := exec.LookPath("mkntfs"); err != nil {
		t.Skip("no mkntfs (ntfs-3g)")
	}
	a := attached(t, 64<<20)
	ctx := context.Background()
	if err := Format(ctx, a.Device, FormatOptions{Filesystem: NTFS, Label: "scratch"}); err != nil {
		t.Fatal(err)
	}
	if fs, err := Probe(a.Device); fs != NTFS || err != nil {
		t.Fatalf("Probe: %q, %v", fs, err)
	}
	mp := t.TempDir()
	if err := Mount(ctx, a.Device, mp, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, "hello.txt"), []byte("ntfs"), 0o644); err != nil {
		t.Error(err)
	}
	if err := Grow(ctx, a.Device, true); !errors.Is(err, ErrOfflineOnly) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Grow of mounted NTFS: %v", err)
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if _, err := attach.Grow(ctx, a.Device, 128<<20); err != nil {
		t.Fatal(err)
	}
	if err := Grow(ctx, a.Device, false); err != nil {
		t.Fatal(err)
	}
	if err := Mount(ctx, a.Device, mp, true); err != nil {
		t.Fatal(err)
	}
	defer Unmount(mp)
	if b, err := os.ReadFile(filepath.Join(mp, "hello.txt")); err != nil || string(b) != "ntfs" {
		t.Errorf("file after growth: %q, %v", b, err)
	}
	if size := statfsSize(t, mp); size < 100<<20 {
		t.Errorf("NTFS size %d after growing to 128 MiB", size)
	}
}

func TestFormatErrors(t *testing.T) {
	if err := Format(context.Background(), "/dev/null", FormatOptions{Filesystem: "xfs"}); err == nil {
		t.Error("formatting with an unknown file system succeeded")
	}
	if err := Format(context.Background(), filepath.Join(t.TempDir(), "missing"), FormatOptions{}); !errors.Is(err, ErrTool) {
		t.Errorf("mkfs on a missing device: %v", err)
	}
}

func TestProbe(t *testing.T) {
	b := make([]byte, 2048)
	if probe(b) != None {
		t.Error("zeros probed as a file system")
	}
	b[1024+56], b[1024+57] = 0x53, 0xef
	if probe(b) != Ext4 {
		t.Error("ext4 magic not found")
	}
	copy(b[3:], "NTFS    ")
	if probe(b) != NTFS {
		t.Error("NTFS OEM ID not found")
	}
	if probe(b[:10]) != None {
		t.Error("short buffer")
	}
}
