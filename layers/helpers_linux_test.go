package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/pkg/ext4"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	os.Exit(m.Run())
}

// needRoot skips t unless the process can mount and attach loop devices and the
// e2fsprogs tools are installed.
func needRoot(t *testing.T) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil || data[0].Effective&(1<<unix.CAP_SYS_ADMIN) == 0 {
		t.Skip("layer mounts need CAP_SYS_ADMIN")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices:", err)
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (e2fsprogs)", tool)
		}
	}
	// Private state for internal/attach and internal/fusefs: other test
	// binaries running at the same time then neither see nor clean up this
	// test's raw views, nor this test theirs.
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

// layerVHD makes an ext4 layer image of the tree populate makes, with a fixed VHD
// footer, as tar2ext4 -vhd would.
func layerVHD(t *testing.T, dir, name string, populate func(root string)) string {
	t.Helper()
	src := filepath.Join(dir, name+".src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	populate(src)
	img := filepath.Join(dir, name+".vhd")
	if out, err := exec.Command("mkfs.ext4", "-q", "-b", "4096", "-d", src, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if err := vhd.AppendFixedFooterFile(img, time.Unix(0, 0), [16]byte{1}); err != nil {
		t.Fatal(err)
	}
	return img
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func whiteout(t *testing.T, path string) {
	t.Helper()
	if err := unix.Mknod(path, unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
}

// checkNothingLeft fails t if anything is mounted below dir or a loop device is
// backed by a file below dir, asking the kernel (mountinfo, and sysfs: unlike
// losetup -a, it opens no device, so it never delays another test's autoclear).
func checkNothingLeft(t *testing.T, dir string) {
	t.Helper()
	infos, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mountinfo.Under(infos, dir) {
		t.Errorf("left mounted: %s (%s from %s)", m.Mountpoint, m.FSType, m.Source)
	}
	if list, err := attach.List(); err == nil {
		for _, a := range list {
			if strings.HasPrefix(a.Disk, dir) {
				t.Errorf("left attached through a raw view: %s on %s", a.Disk, a.Device)
			}
		}
	}
	devs, err := loop.FindUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		b, _ := os.ReadFile("/sys/block/" + filepath.Base(d) + "/loop/backing_file")
		t.Errorf("left attached: %s on %s", d, strings.TrimSpace(string(b)))
	}
}

// cleanupMounts unmounts and detaches whatever a failed test left under dir, so
// that one failure does not break the next tests.
func cleanupMounts(t *testing.T, dir string) {
	t.Cleanup(func() {
		mount.UnmountAll(dir, true)
	})
}

// tarEntry is one entry of a layer tar made by tarLayerVHD.
type tarEntry struct {
	name string
	typ  byte   // tar.TypeReg, TypeDir, TypeSymlink
	body []byte // file content
	link string // symbolic link target
	mode int64
}

// tarLayerVHD writes the entries as an OCI layer tar, builds an ext4 image of it
// with pkg/ext4 (OCI whiteouts turned into overlay ones) and appends a fixed VHD
// footer: a layer as hcs tar2ext4 -vhd makes it.
func tarLayerVHD(t *testing.T, dir, name string, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, name+".vhd")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ext4.Build(context.Background(), f, &buf, ext4.WithConvertWhiteouts()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := vhd.AppendFixedFooterFile(img, time.Unix(0, 0), [16]byte{3}); err != nil {
		t.Fatal(err)
	}
	return img
}
