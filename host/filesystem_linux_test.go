package host

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/mount"
)

// mountDev mounts the file system of dev at mp through the executor.
func mountDev(ctx context.Context, dev, mp string, ro bool) error {
	_, err := Apply(ctx, Plan{FilesystemMount(mount.TypeAuto, dev, mp, ro)})
	return err
}

// hasCap reports whether the process has capability c in effect.
func hasCap(c int) bool {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}

// attached attaches a new sparse raw disk of size bytes and detaches it at
// the end of the test.
func attachedRaw(t *testing.T, size int64) *attach.Attachment {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	a, err := attach.Attach(context.Background(), p, attach.Options{Raw: true})
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
	a := attachedRaw(t, 64<<20)
	ctx := context.Background()
	if fs, _ := diskfs.Probe(a.Device); fs != diskfs.None {
		t.Errorf("Probe of an empty disk: %q", fs)
	}
	if err := diskfs.Format(ctx, a.Device, diskfs.FormatOptions{Label: "scratch", AssumeZeroed: true}); err != nil {
		t.Fatal(err)
	}
	if fs, err := diskfs.Probe(a.Device); fs != diskfs.Ext4 || err != nil {
		t.Fatalf("Probe: %q, %v", fs, err)
	}
	mp := t.TempDir()
	if err := mountDev(ctx, a.Device, mp, false); err != nil {
		t.Fatal(err)
	}
	defer mount.Unmount(mp)
	if err := os.WriteFile(filepath.Join(mp, "before"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := statfsSize(t, mp)
	if _, err := attach.Grow(ctx, a.Device, 256<<20); err != nil {
		t.Fatal(err)
	}
	online := hasCap(unix.CAP_SYS_RESOURCE)
	if !online {
		t.Log("no CAP_SYS_RESOURCE: the kernel refuses online ext4 growth here; testing the remount path")
		if err := diskfs.Grow(ctx, a.Device, true); !errors.Is(err, diskfs.ErrOnlineNotPermitted) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("online Grow without CAP_SYS_RESOURCE: %v", err)
		}
		// A busy mount is left as it was.
		f, err := os.Open(filepath.Join(mp, "before"))
		if err != nil {
			t.Fatal(err)
		}
		if err := GrowFilesystem(ctx, a.Device); !errors.Is(err, unix.EBUSY) {
			t.Errorf("GrowInPlace with an open file: %v, want EBUSY", err)
		}
		f.Close()
		if statfsSize(t, mp) != before {
			t.Error("a refused growth changed the file system")
		}
	}
	if err := GrowFilesystem(ctx, a.Device); err != nil {
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
	if err := mount.Unmount(mp); err != nil {
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
	a := attachedRaw(t, 64<<20)
	ctx := context.Background()
	if err := diskfs.Format(ctx, a.Device, diskfs.FormatOptions{Filesystem: diskfs.NTFS, Label: "scratch"}); err != nil {
		t.Fatal(err)
	}
	if fs, err := diskfs.Probe(a.Device); fs != diskfs.NTFS || err != nil {
		t.Fatalf("Probe: %q, %v", fs, err)
	}
	mp := t.TempDir()
	if err := mountDev(ctx, a.Device, mp, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, "hello.txt"), []byte("ntfs"), 0o644); err != nil {
		t.Error(err)
	}
	if err := diskfs.Grow(ctx, a.Device, true); !errors.Is(err, diskfs.ErrOfflineOnly) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Grow of mounted NTFS: %v", err)
	}
	if err := mount.Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if _, err := attach.Grow(ctx, a.Device, 128<<20); err != nil {
		t.Fatal(err)
	}
	if err := diskfs.Grow(ctx, a.Device, false); err != nil {
		t.Fatal(err)
	}
	if err := mountDev(ctx, a.Device, mp, true); err != nil {
		t.Fatal(err)
	}
	defer mount.Unmount(mp)
	if b, err := os.ReadFile(filepath.Join(mp, "hello.txt")); err != nil || string(b) != "ntfs" {
		t.Errorf("file after growth: %q, %v", b, err)
	}
	if size := statfsSize(t, mp); size < 100<<20 {
		t.Errorf("NTFS size %d after growing to 128 MiB", size)
	}
}
