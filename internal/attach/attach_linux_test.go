package attach

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/proctest"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	if stage := os.Getenv("ATTACH_TEST_CRASH_AT"); stage != "" {
		crashChild(stage)
		return
	}
	os.Exit(m.Run())
}

// crashChild attaches ATTACH_TEST_DISK and kills itself with SIGKILL at the
// given stage of attach ("never" to print the device and wait).
func crashChild(stage string) {
	testHook = func(s string) {
		if s == stage {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		}
	}
	a, err := Attach(context.Background(), os.Getenv("ATTACH_TEST_DISK"), Options{Raw: os.Getenv("ATTACH_TEST_RAW") != ""})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(a.Device)
	time.Sleep(time.Hour)
}

const testSize = 64 << 20

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	for _, p := range []string{"/dev/loop-control", "/dev/fuse"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no %s: %v", p, err)
		}
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeDisk creates an empty disk of the given format and testSize in dir.
func makeDisk(t *testing.T, dir string, format Format) string {
	t.Helper()
	switch format {
	case FormatRaw:
		p := filepath.Join(dir, "disk.img")
		if err := os.Truncate(p, testSize); err != nil {
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(testSize)
			f.Close()
		}
		return p
	case FormatVHDFixed, FormatVHDDynamic:
		p := filepath.Join(dir, "disk.vhd")
		typ := vhd.Fixed
		if format == FormatVHDDynamic {
			typ = vhd.Dynamic
		}
		d, err := vhd.Create(p, vhd.CreateOptions{Type: typ, Size: testSize})
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		return p
	case FormatVHDDifferencing:
		base := filepath.Join(dir, "base.vhd")
		d, err := vhd.Create(base, vhd.CreateOptions{Type: vhd.Dynamic, Size: testSize})
		if err != nil {
			t.Fatal(err)
		}
		// Data in the parent that the child must show through.
		d.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), testSize-4096)
		d.Close()
		p := filepath.Join(dir, "child.vhd")
		d, err = vhd.Create(p, vhd.CreateOptions{Type: vhd.Differencing, Parent: base})
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		return p
	case FormatVHDXFixed, FormatVHDXDynamic:
		p := filepath.Join(dir, "disk.vhdx")
		opts := vhd.VHDXCreateOptions{Size: testSize, BlockSize: 1 << 20, Fixed: format == FormatVHDXFixed}
		if err := vhd.CreateVHDX(p, opts); err != nil {
			t.Fatal(err)
		}
		return p
	case FormatVHDXDifferencing:
		base := filepath.Join(dir, "base.vhdx")
		if err := vhd.CreateVHDX(base, vhd.VHDXCreateOptions{Size: testSize, BlockSize: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		d, err := vhd.Open(base, false)
		if err != nil {
			t.Fatal(err)
		}
		d.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), testSize-4096)
		d.Close()
		p := filepath.Join(dir, "child.vhdx")
		if err := vhd.CreateVHDX(p, vhd.VHDXCreateOptions{Parent: base}); err != nil {
			t.Fatal(err)
		}
		return p
	case "vhdx-fixed-qemu":
		p := filepath.Join(dir, "qemu.vhdx")
		run(t, "qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=fixed", p, fmt.Sprint(testSize))
		return p
	}
	t.Fatalf("no maker for %s", format)
	return ""
}

// virtualImage copies the virtual disk at path, read through package vhd, to
// a raw file.
func virtualImage(t *testing.T, path string) string {
	t.Helper()
	d, err := OpenDisk(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out := filepath.Join(t.TempDir(), "virtual.raw")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(d, 0, d.Size())); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkClean fails if a left a loop device, a mount, a helper or state. It
// looks only at what the test owns (a's disk, backing file and ID, the state
// directories, and the directories in mounts): once detached, a's device
// number is free for another test binary to attach and mount at once.
func checkClean(t *testing.T, a *Attachment, mounts ...string) {
	t.Helper()
	if boundTo(a) {
		t.Errorf("%s still bound to %s", a.Device, a.BackingFile)
	}
	for _, f := range []string{a.Disk, a.BackingFile} {
		if devs, _ := loop.Find(f); len(devs) > 0 {
			t.Errorf("loop devices still on %s: %v", f, devs)
		}
	}
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.Contains(m.Source, a.ID) {
			t.Errorf("mount left: %+v", m)
		}
	}
	for _, dir := range append([]string{filepath.Dir(a.Disk), StateDir(), fusefs.StateDir()}, mounts...) {
		for _, m := range mountinfo.Under(ms, dir) {
			t.Errorf("mount left under %s: %+v", dir, m)
		}
	}
	for _, dir := range []string{StateDir(), fusefs.StateDir()} {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			var names []string
			for _, e := range entries {
				if e.Name() != globalLock {
					names = append(names, e.Name())
				}
			}
			if len(names) > 0 {
				t.Errorf("state left in %s: %v", dir, names)
			}
		}
	}
	out, _ := exec.Command("pgrep", "-f", "fusefs-helper "+a.ID).Output()
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("helper processes left: %s", out)
	}
}

var allFormats = []Format{FormatRaw, FormatVHDFixed, FormatVHDDynamic, FormatVHDDifferencing,
	FormatVHDXFixed, FormatVHDXDynamic, FormatVHDXDifferencing, "vhdx-fixed-qemu"}

// TestFormatMountWrite: attach each kind, mkfs.ext4, mount, write, unmount,
// detach; then read the disk again through package vhd and find the file
// with debugfs, and e2fsck finds the file system clean.
func TestFormatMountWrite(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, format := range allFormats {
		t.Run(string(format), func(t *testing.T) {
			wantFormat := format
			if format == "vhdx-fixed-qemu" {
				if _, err := exec.LookPath("qemu-img"); err != nil {
					t.Skip("no qemu-img to make a fixed VHDX")
				}
				wantFormat = FormatVHDXFixed
			}
			disk := makeDisk(t, t.TempDir(), format)
			a, err := Attach(ctx, disk, Options{Raw: format == FormatRaw})
			if err != nil {
				t.Fatal(err)
			}
			if a.Format != wantFormat || a.Size != testSize || a.RawView == format.RawBacked() {
				t.Errorf("attachment %+v", a)
			}
			if got := deviceSize(t, a.Device); got != testSize {
				t.Errorf("device size %d, want %d", got, testSize)
			}
			if format == FormatVHDDifferencing || format == FormatVHDXDifferencing {
				// The parent's data shows through the child.
				b := make([]byte, 4096)
				f, _ := os.Open(a.Device)
				f.ReadAt(b, testSize-4096)
				f.Close()
				if !bytes.Equal(b, bytes.Repeat([]byte{0xa5}, 4096)) {
					t.Error("parent data not visible through the differencing child")
				}
			}
			run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", a.Device)
			mp := t.TempDir()
			if err := unix.Mount(a.Device, mp, "ext4", 0, ""); err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte(string(format)+" data\n"), 50000)
			if err := os.WriteFile(filepath.Join(mp, "hello"), want, 0o644); err != nil {
				unix.Unmount(mp, 0)
				t.Fatal(err)
			}
			if err := Detach(ctx, a.Device); !errors.Is(err, ErrBusy) {
				t.Errorf("Detach of a mounted device: %v, want ErrBusy", err)
			}
			if err := unix.Unmount(mp, 0); err != nil {
				t.Fatal(err)
			}
			if err := Detach(ctx, disk); err != nil {
				t.Fatal(err)
			}
			checkClean(t, a, mp)
			raw := virtualImage(t, disk)
			run(t, "e2fsck", "-fn", raw)
			got, err := exec.Command("debugfs", "-R", "cat /hello", raw).Output()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("debugfs cat /hello: %d bytes (want %d), %v", len(got), len(want), err)
			}
			switch format {
			case FormatVHDXDynamic, FormatVHDXFixed, "vhdx-fixed-qemu":
				if _, err := exec.LookPath("qemu-img"); err == nil {
					run(t, "qemu-img", "check", "-f", "vhdx", disk)
				}
			}
			// 7-Zip reads every VHD and VHDX, differencing VHDX included (qemu
			// cannot): what it extracts is what package vhd reads.
			if typ := map[Format]string{FormatVHDDynamic: "VHD", FormatVHDDifferencing: "VHD",
				FormatVHDXDynamic: "VHDX", FormatVHDXDifferencing: "VHDX"}[format]; typ != "" {
				if _, err := exec.LookPath("7zz"); err == nil {
					cmd := exec.Command("7zz", "e", "-t"+typ, "-so", filepath.Base(disk))
					cmd.Dir = filepath.Dir(disk)
					out, err := cmd.Output()
					if err != nil {
						t.Fatalf("7zz e: %v", err)
					}
					if sha256.Sum256(out) != fileHash(t, raw) {
						t.Error("7-Zip extracts other bytes than package vhd reads")
					}
				}
			}
		})
	}
}

func deviceSize(t *testing.T, dev string) int64 {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestReadOnly: a read-only attachment refuses writes and leaves the file
// byte-identical.
func TestReadOnly(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, format := range []Format{FormatRaw, FormatVHDFixed, FormatVHDDynamic, FormatVHDXDynamic, FormatVHDXDifferencing} {
		t.Run(string(format), func(t *testing.T) {
			disk := makeDisk(t, t.TempDir(), format)
			before := fileHash(t, disk)
			a, err := Attach(ctx, disk, Options{ReadOnly: true, Raw: format == FormatRaw})
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(a.Device, os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteAt([]byte("x"), 0)
				if err == nil {
					err = f.Sync()
				}
				f.Close()
			}
			if err == nil {
				t.Error("writing to a read-only device succeeded")
			}
			b := make([]byte, 4096)
			r, err := os.Open(a.Device)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.ReadAt(b, 0); err != nil {
				t.Errorf("reading a read-only device: %v", err)
			}
			r.Close()
			if err := Detach(ctx, a.Device); err != nil {
				t.Fatal(err)
			}
			checkClean(t, a)
			if fileHash(t, disk) != before {
				t.Error("read-only attach changed the disk file")
			}
		})
	}
}

func TestAttachErrors(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Attach(ctx, filepath.Join(dir, "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing disk: %v", err)
	}
	bad := filepath.Join(dir, "bad.vhdx")
	os.WriteFile(bad, append([]byte("vhdxfile"), make([]byte, 1<<20)...), 0o644)
	if _, err := Attach(ctx, bad, Options{}); !errors.Is(err, vhd.ErrInvalidFormat) {
		t.Errorf("corrupt VHDX: %v", err)
	}
	// Content that is neither VHD, VHDX nor a recognised raw image is raw only
	// when the caller says so.
	blank := filepath.Join(dir, "blank.img")
	os.WriteFile(blank, make([]byte, 1<<20), 0o644)
	if _, err := Attach(ctx, blank, Options{}); !errors.Is(err, vhd.ErrUnknownFormat) {
		t.Errorf("blank file without Raw: %v, want ErrUnknownFormat", err)
	}
	// A VHD whose footer is cut short is not a raw disk.
	fixed := makeDisk(t, t.TempDir(), FormatVHDFixed)
	if st, err := os.Stat(fixed); err == nil {
		os.Truncate(fixed, st.Size()-100)
	}
	if _, err := Attach(ctx, fixed, Options{}); !errors.Is(err, vhd.ErrTruncated) {
		t.Errorf("VHD with its footer cut short: %v, want ErrTruncated", err)
	}
	child := makeDisk(t, t.TempDir(), FormatVHDXDifferencing)
	os.Remove(filepath.Join(filepath.Dir(child), "base.vhdx"))
	if _, err := Attach(ctx, child, Options{}); !errors.Is(err, vhd.ErrParentNotFound) {
		t.Errorf("differencing disk without its parent: %v, want ErrParentNotFound", err)
	}
	disk := makeDisk(t, dir, FormatVHDDynamic)
	a, err := Attach(ctx, disk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Attach(ctx, disk, Options{ReadOnly: true}); !errors.Is(err, ErrAttached) || !strings.Contains(err.Error(), a.Device) {
		t.Errorf("second attach: %v", err)
	}
	if got, err := Get(a.Device); err != nil || got.ID != a.ID {
		t.Errorf("Get: %+v, %v", got, err)
	}
	if l, err := List(); err != nil || len(l) != 1 {
		t.Errorf("List: %+v, %v", l, err)
	}
	if err := Detach(ctx, disk); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ctx, disk); !errors.Is(err, ErrNotAttached) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second detach: %v", err)
	}
	checkClean(t, a)
}

// TestCrashedCaller kills a child process with SIGKILL at each step of
// Attach; Cleanup (or the next Attach) leaves nothing behind.
func TestCrashedCaller(t *testing.T) {
	needRoot(t)
	for _, stage := range []string{"view-mounted", "loop-attached", "device-recorded", "autoclear-off"} {
		for _, format := range []Format{FormatRaw, FormatVHDXDynamic} {
			if stage == "view-mounted" && format.RawBacked() {
				continue
			}
			t.Run(stage+"/"+string(format), func(t *testing.T) {
				disk := makeDisk(t, t.TempDir(), format)
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "ATTACH_TEST_CRASH_AT="+stage, "ATTACH_TEST_DISK="+disk)
				if format == FormatRaw {
					cmd.Env = append(cmd.Env, "ATTACH_TEST_RAW=1")
				}
				out, _ := cmd.CombinedOutput()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("child did not die at %s: %s", stage, out)
				}
				// The next Attach of the same disk cleans up and works.
				a, err := Attach(context.Background(), disk, Options{Raw: format == FormatRaw})
				if err != nil {
					t.Fatalf("attach after a crash at %s: %v", stage, err)
				}
				if err := Detach(context.Background(), a.Device); err != nil {
					t.Fatal(err)
				}
				if err := Cleanup(context.Background()); err != nil {
					t.Fatal(err)
				}
				checkClean(t, a)
				if devs, _ := loop.Find(disk); len(devs) > 0 {
					t.Errorf("devices left on the disk: %v", devs)
				}
			})
		}
	}
}

// TestCallerGone: an attachment made by a process that then dies stays
// usable, and Detach from another process ends it.
func TestCallerGone(t *testing.T) {
	needRoot(t)
	disk := makeDisk(t, t.TempDir(), FormatVHDDynamic)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ATTACH_TEST_CRASH_AT=never", "ATTACH_TEST_DISK="+disk)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 256)
	n, _ := stdout.Read(line)
	dev := strings.TrimSpace(string(line[:n]))
	cmd.Process.Kill()
	cmd.Wait()
	if err := Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, err := Get(dev)
	if err != nil {
		t.Fatalf("child said %q: %v", dev, err)
	}
	if got := deviceSize(t, a.Device); got != testSize {
		t.Errorf("device size %d after the caller died", got)
	}
	if err := Detach(context.Background(), dev); err != nil {
		t.Fatal(err)
	}
	checkClean(t, a)
}

// TestHelperKilled: when the raw view's helper dies, Cleanup removes the
// broken attachment, also when the kernel still has the root of the dead view
// cached, and when another process's cleanup has detached the dead view's
// mount already (its mount point is then a plain directory again).
func TestHelperKilled(t *testing.T) {
	needRoot(t)
	for _, detached := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detached), func(t *testing.T) {
			disk := makeDisk(t, t.TempDir(), FormatVHDXDynamic)
			a, err := Attach(context.Background(), disk, Options{})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := fusefs.Get(a.ID)
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Stat(rec.Mountpoint, &st); err != nil {
				t.Fatal(err)
			}
			// Cleanup sees the view as dead once the helper has let go of its
			// lock and of /dev/fuse, that is once all its threads have exited.
			if err := proctest.KillWait(rec.PID, proctest.Timeout); err != nil {
				t.Fatal(err)
			}
			if detached {
				if err := unix.Unmount(rec.Mountpoint, unix.MNT_DETACH); err != nil {
					t.Fatal(err)
				}
			}
			if err := Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkClean(t, a)
		})
	}
}

// TestGrow grows attached disks, a differencing VHDX past its parent
// included; the device follows and the file is a valid disk of the new size
// afterwards.
func TestGrow(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, format := range []Format{FormatRaw, FormatVHDFixed, FormatVHDDynamic, FormatVHDXFixed, FormatVHDXDynamic, FormatVHDXDifferencing} {
		t.Run(string(format), func(t *testing.T) {
			disk := makeDisk(t, t.TempDir(), format)
			a, err := Attach(ctx, disk, Options{Raw: format == FormatRaw})
			if err != nil {
				t.Fatal(err)
			}
			defer Detach(ctx, a.Device)
			f, err := os.OpenFile(a.Device, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("end of the old disk"), testSize-19)
			f.Sync()
			f.Close()
			// A differencing VHDX grows past its parent too: what lies past
			// the parent's end reads as zeros.
			_, err = Grow(ctx, a.Device, 2*testSize)
			if err != nil {
				t.Fatal(err)
			}
			if got := deviceSize(t, a.Device); got != 2*testSize {
				t.Errorf("device size %d after Grow", got)
			}
			if got, _ := Get(a.Device); got.Size != 2*testSize {
				t.Errorf("recorded size %d", got.Size)
			}
			if err := Detach(ctx, a.Device); err != nil {
				t.Fatal(err)
			}
			detect, open := Detect, OpenDisk
			if format == FormatRaw { // a blank raw image is raw by the caller's word
				detect = detectRaw
				open = func(p string, _ bool) (Disk, error) {
					f, err := os.Open(p)
					return &rawDisk{f, 2 * testSize}, err
				}
			}
			info, err := detect(disk)
			if err != nil || info.Size != 2*testSize || info.Format != format {
				t.Fatalf("Detect after Grow: %+v, %v", info, err)
			}
			d, err := open(disk, true)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			b := make([]byte, 64)
			d.ReadAt(b, testSize-19)
			if string(b[:19]) != "end of the old disk" || !bytes.Equal(b[19:], make([]byte, 45)) {
				t.Errorf("data around the old end: %q", b)
			}
			if format == FormatVHDFixed {
				if _, err := exec.LookPath("qemu-img"); err == nil {
					out := run(t, "qemu-img", "info", "--output=json", "-f", "vpc", disk)
					if !strings.Contains(out, fmt.Sprintf(`"virtual-size": %d`, 2*testSize)) {
						t.Errorf("qemu-img info after growth: %s", out)
					}
				}
			}
		})
	}
}

// TestRawViewKeepsPageCache: reading the raw view's file a second time, by
// a new open, is served from the kernel's page cache, not by the helper.
func TestRawViewKeepsPageCache(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	disk := makeDisk(t, t.TempDir(), FormatVHDXFixed) // every read goes to the file
	a, err := Attach(ctx, disk, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer Detach(ctx, a.Device)
	rec, err := fusefs.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	readAll := func() {
		f, err := os.Open(a.BackingFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, err := io.Copy(io.Discard, f); err != nil || n != testSize {
			t.Fatalf("read %d bytes of the view: %v", n, err)
		}
	}
	helperRead := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", rec.PID))
		if err != nil {
			t.Skipf("no /proc/PID/io: %v", err)
		}
		var rchar int64
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "rchar: "); ok {
				fmt.Sscan(v, &rchar)
			}
		}
		return rchar
	}
	readAll()
	before := helperRead()
	readAll()
	t.Logf("helper rchar before %d after %d", before, helperRead())
	if got := helperRead() - before; got > testSize/8 {
		t.Errorf("the helper read %d bytes for a second read of %d cached bytes", got, testSize)
	}
}

// TestDetachedBehindItsBack: once an attachment's loop device is detached by
// someone else, the device number belongs to whoever attaches it next, so the
// stale record no longer answers for the device; it is still found, and
// ended, by its disk.
func TestDetachedBehindItsBack(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	disk := makeDisk(t, t.TempDir(), FormatRaw)
	a, err := Attach(ctx, disk, Options{Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Get(a.Device); err != nil || got.ID != a.ID {
		t.Fatalf("Get(%s) = %+v, %v", a.Device, got, err)
	}
	if err := loop.DetachPath(a.Device); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(proctest.Timeout); boundTo(a); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still bound after LOOP_CLR_FD", a.Device)
		}
	}
	if got, err := Get(a.Device); !errors.Is(err, ErrNotAttached) {
		t.Errorf("Get(%s) of a detached device = %+v, %v; want ErrNotAttached", a.Device, got, err)
	}
	if err := Detach(ctx, a.Device); !errors.Is(err, ErrNotAttached) {
		t.Errorf("Detach(%s) of a detached device: %v; want ErrNotAttached", a.Device, err)
	}
	if got, err := Get(disk); err != nil || got.ID != a.ID {
		t.Errorf("Get(%s) = %+v, %v; want the broken attachment", disk, got, err)
	}
	if err := Detach(ctx, disk); err != nil {
		t.Fatal(err)
	}
	checkClean(t, a)
}
