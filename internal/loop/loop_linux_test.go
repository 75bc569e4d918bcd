package loop

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// requireLoop skips the test unless the process can attach loop devices:
// CAP_SYS_ADMIN in its effective set and a usable /dev/loop-control.
func requireLoop(t *testing.T) {
	t.Helper()
	if !hasCapSysAdmin() {
		t.Skip("loop devices need CAP_SYS_ADMIN (run the tests as root)")
	}
	fd, err := unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("cannot open %s (%v): the loop module or device node is missing", controlPath, err)
	}
	unix.Close(fd)
}

func hasCapSysAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		return err == nil && caps&(1<<unix.CAP_SYS_ADMIN) != 0
	}
	return false
}

// newBacking creates a sparse file of size bytes in a fresh temp dir and
// registers a cleanup that fails the test if a loop device still uses it,
// and detaches any it finds.
func newBacking(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		devs, err := Find(path)
		if err != nil {
			t.Errorf("Find(%s): %v", path, err)
			return
		}
		if len(devs) > 0 {
			t.Errorf("loop devices still attached to %s: %v", path, devs)
			for _, d := range devs {
				if err := DetachPath(d); err != nil {
					t.Errorf("DetachPath(%s): %v", d, err)
				}
			}
		}
	})
	return path
}

// attach attaches path and detaches it at the end of the test.
func attach(t *testing.T, path string, opts Options) *Device {
	t.Helper()
	d, err := Attach(path, opts)
	if err != nil {
		t.Fatalf("Attach(%s, %+v): %v", path, opts, err)
	}
	t.Cleanup(func() {
		if err := d.Detach(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

// sysfs returns the trimmed content of /sys/block/<dev>/<attr>.
func sysfs(t *testing.T, d *Device, attr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.Path()), attr))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestAttachSizeAndReadOnly(t *testing.T) {
	requireLoop(t)
	tests := []struct {
		name     string
		opts     Options
		wantRO   string
		writable bool
	}{
		{"read-write", Options{AutoClear: true}, "0", true},
		{"read-only", Options{ReadOnly: true, AutoClear: true}, "1", false},
		{"no-autoclear", Options{}, "0", true},
		{"direct-io", Options{DirectIO: true, AutoClear: true}, "0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := newBacking(t, 64*mib)
			d := attach(t, path, tt.opts)
			if !strings.HasPrefix(d.Path(), "/dev/loop") {
				t.Errorf("Path() = %q, want /dev/loopN", d.Path())
			}
			if got, want := sysfs(t, d, "size"), strconv.Itoa(64*mib/512); got != want {
				t.Errorf("size = %s sectors, want %s", got, want)
			}
			if got := sysfs(t, d, "ro"); got != tt.wantRO {
				t.Errorf("ro = %s, want %s", got, tt.wantRO)
			}
			wantAC := "0"
			if tt.opts.AutoClear {
				wantAC = "1"
			}
			if got := sysfs(t, d, "loop/autoclear"); got != wantAC {
				t.Errorf("autoclear = %s, want %s", got, wantAC)
			}
			t.Logf("%s: dio = %s", d.Path(), sysfs(t, d, "loop/dio"))

			err := writeDevice(d.Path(), 4096, bytes.Repeat([]byte{0xa5}, 4096))
			if tt.writable && err != nil {
				t.Errorf("writing to %s: %v", d.Path(), err)
			}
			if !tt.writable && err == nil {
				t.Errorf("writing to read-only %s succeeded", d.Path())
			}
		})
	}
}

// writeDevice writes p at off on the device and syncs it.
func writeDevice(dev string, off int64, p []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		return err
	}
	return f.Sync()
}

func TestAttachErrors(t *testing.T) {
	requireLoop(t)
	path := newBacking(t, mib)
	tests := []struct {
		name string
		path string
		opts Options
		want error
	}{
		{"missing file", filepath.Join(t.TempDir(), "missing"), Options{}, fs.ErrNotExist},
		{"negative offset", path, Options{Offset: -1}, nil},
		{"negative size limit", path, Options{SizeLimit: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Attach(tt.path, tt.opts)
			if err == nil {
				d.Detach()
				t.Fatalf("Attach(%s, %+v) succeeded, want an error", tt.path, tt.opts)
			}
			var le *Error
			if !errors.As(err, &le) || le.Op != "attach" {
				t.Errorf("error %v is not an *Error with Op attach", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want errors.Is %v", err, tt.want)
			}
		})
	}
}

func TestOffsetAndSizeLimit(t *testing.T) {
	requireLoop(t)
	path := newBacking(t, 16*mib)
	pattern := make([]byte, 16*mib)
	for i := range pattern {
		// Varies within and across sectors, so a shifted view cannot match.
		pattern[i] = byte(i/512*31 + i)
	}
	if err := os.WriteFile(path, pattern, 0o644); err != nil {
		t.Fatal(err)
	}

	d := attach(t, path, Options{ReadOnly: true, Offset: mib, SizeLimit: 8 * mib, AutoClear: true})
	if got, want := sysfs(t, d, "size"), strconv.Itoa(8*mib/512); got != want {
		t.Errorf("size = %s sectors, want %s", got, want)
	}
	if got := sysfs(t, d, "loop/offset"); got != strconv.Itoa(mib) {
		t.Errorf("loop/offset = %s, want %d", got, mib)
	}
	if got := sysfs(t, d, "loop/sizelimit"); got != strconv.Itoa(8*mib) {
		t.Errorf("loop/sizelimit = %s, want %d", got, 8*mib)
	}
	f, err := os.Open(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	want := pattern[mib : 9*mib]
	if len(got) != len(want) {
		t.Fatalf("read %d bytes from %s, want %d", len(got), d.Path(), len(want))
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("device byte %d = %#x, want %#x (file offset %d)", i, got[i], want[i], mib+i)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// mount mounts dev at a fresh directory and unmounts it at the end of the
// test if the test did not.
func mount(t *testing.T, dev string, flags uintptr) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, "ext4", flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("cleanup: unmount %s: %v", dir, err)
		}
	})
	return dir
}

func requireMkfs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not found: install e2fsprogs (scripts/install-deps.sh)")
	}
}

func TestExt4RoundTrip(t *testing.T) {
	requireLoop(t)
	requireMkfs(t)
	path := newBacking(t, 64*mib)
	content := []byte("written through a loop device\n")

	d := attach(t, path, Options{AutoClear: true})
	if out, err := exec.Command("mkfs.ext4", "-q", d.Path()).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", d.Path(), err, out)
	}
	dir := mount(t, d.Path(), 0)
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}

	// Mounted: Detach must refuse and leave the device usable.
	err := d.Detach()
	if !errors.Is(err, ErrBusy) || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Detach while mounted = %v, want ErrBusy and EBUSY", err)
	}
	if devs, _ := Find(path); !slices.Equal(devs, []string{d.Path()}) {
		t.Fatalf("after refused Detach, Find = %v, want [%s]", devs, d.Path())
	}

	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(); err != nil {
		t.Fatalf("Detach after unmount: %v", err)
	}
	if devs, _ := Find(path); len(devs) != 0 {
		t.Fatalf("after Detach, Find = %v, want none", devs)
	}

	ro := attach(t, path, Options{ReadOnly: true, AutoClear: true})
	dir = mount(t, ro.Path(), unix.MS_RDONLY)
	got, err := os.ReadFile(filepath.Join(dir, "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("read back %q, want %q", got, content)
	}
	if err := os.WriteFile(filepath.Join(dir, "new.txt"), content, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing to read-only mount: %v, want EROFS", err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if err := ro.Detach(); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseAutoClear checks the documented way to hand a mounted device
// over to the kernel: Release, and the device goes away with the last unmount.
func TestReleaseAutoClear(t *testing.T) {
	requireLoop(t)
	requireMkfs(t)
	path := newBacking(t, 64*mib)
	d := attach(t, path, Options{AutoClear: true})
	if out, err := exec.Command("mkfs.ext4", "-q", d.Path()).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", d.Path(), err, out)
	}
	dir := mount(t, d.Path(), 0)
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if devs, _ := Find(path); !slices.Equal(devs, []string{d.Path()}) {
		t.Fatalf("mounted after Release: Find = %v, want [%s]", devs, d.Path())
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	waitDetached(t, path)
	if err := d.Detach(); err != nil {
		t.Errorf("Detach after Release = %v, want nil", err)
	}
}

// waitDetached waits for the kernel to drop every device backed by path.
func waitDetached(t *testing.T, path string) {
	t.Helper()
	// Generous: another process that has the device open (losetup -a opens
	// every attached device) delays the kernel's detach until it closes it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		devs, err := Find(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices %v still attached to %s", devs, path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDetachTwice(t *testing.T) {
	requireLoop(t)
	path := newBacking(t, 8*mib)
	d, err := Attach(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(); err != nil {
		t.Fatalf("first Detach: %v", err)
	}
	if err := d.Detach(); err != nil {
		t.Errorf("second Detach = %v, want nil", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after Detach = %v, want nil", err)
	}
	if err := d.Release(); err != nil {
		t.Errorf("Release after Detach = %v, want nil", err)
	}
}

func TestFind(t *testing.T) {
	requireLoop(t)
	path := newBacking(t, 8*mib)
	other := newBacking(t, 8*mib)
	link := filepath.Join(t.TempDir(), "link.img")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}

	if devs, err := Find(path); err != nil || len(devs) != 0 {
		t.Fatalf("before Attach: Find = %v, %v; want none", devs, err)
	}
	d1 := attach(t, path, Options{AutoClear: true})
	d2 := attach(t, path, Options{ReadOnly: true, AutoClear: true})
	d3 := attach(t, other, Options{AutoClear: true})

	want := []string{d1.Path(), d2.Path()}
	slices.SortFunc(want, func(a, b string) int { return devNum(a) - devNum(b) })
	for _, name := range []string{path, link} {
		if devs, err := Find(name); err != nil || !slices.Equal(devs, want) {
			t.Errorf("Find(%s) = %v, %v; want %v", name, devs, err, want)
		}
	}
	if devs, _ := Find(other); !slices.Equal(devs, []string{d3.Path()}) {
		t.Errorf("Find(other) = %v, want [%s]", devs, d3.Path())
	}
	dir := filepath.Dir(path)
	if devs, err := FindUnder(dir); err != nil || !slices.Equal(devs, want) {
		t.Errorf("FindUnder(%s) = %v, %v; want %v", dir, devs, err, want)
	}
	all := append(slices.Clone(want), d3.Path())
	slices.SortFunc(all, func(a, b string) int { return devNum(a) - devNum(b) })
	if devs, err := FindUnder(filepath.Dir(dir)); err != nil || !slices.Equal(devs, all) {
		t.Errorf("FindUnder(%s) = %v, %v; want %v", filepath.Dir(dir), devs, err, all)
	}
	// A name that is a prefix of the directory's, but not a parent of it.
	if devs, err := FindUnder(dir[:len(dir)-1]); err != nil || len(devs) != 0 {
		t.Errorf("FindUnder(%s) = %v, %v; want none", dir[:len(dir)-1], devs, err)
	}

	for _, d := range []*Device{d1, d2, d3} {
		if err := d.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{path, other} {
		if devs, err := Find(name); err != nil || len(devs) != 0 {
			t.Errorf("after Detach: Find(%s) = %v, %v; want none", name, devs, err)
		}
	}
}

func devNum(dev string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(dev, "/dev/loop"))
	return n
}

// TestCrashCleanup plays a caller that attached without AutoClear and died:
// its handle is gone but the device stays, and Find plus DetachPath remove it.
func TestCrashCleanup(t *testing.T) {
	requireLoop(t)
	path := newBacking(t, 8*mib)
	d, err := Attach(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	devs, err := Find(path)
	if err != nil || !slices.Equal(devs, []string{d.Path()}) {
		t.Fatalf("after Release without AutoClear: Find = %v, %v; want [%s]", devs, err, d.Path())
	}
	for _, dev := range devs {
		if err := DetachPath(dev); err != nil {
			t.Fatal(err)
		}
	}
	waitDetached(t, path)
}

// TestConcurrentAttach holds 8 attachers between LOOP_CTL_GET_FREE and
// LOOP_CONFIGURE until all have been handed a free device, so that they all
// race for the same one; all but one must get EBUSY, retry and succeed.
func TestConcurrentAttach(t *testing.T) {
	requireLoop(t)
	const n = 8
	paths := make([]string, n)
	for i := range paths {
		paths[i] = newBacking(t, 8*mib)
	}

	var (
		mu      sync.Mutex
		arrived int
		first   = map[int]int{} // device number -> attachers handed it in the first round
		release = make(chan struct{})
	)
	testHookGotFree = func(dev int) {
		mu.Lock()
		if arrived == n {
			mu.Unlock()
			return
		}
		arrived++
		first[dev]++
		if arrived == n {
			close(release)
		}
		mu.Unlock()
		select {
		case <-release:
		case <-time.After(60 * time.Second):
		}
	}
	t.Cleanup(func() { testHookGotFree = nil })
	before := busyRetries.Load()

	devs := make([]*Device, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			devs[i], errs[i] = Attach(paths[i], Options{AutoClear: true})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, d := range devs {
		if errs[i] != nil {
			t.Errorf("attacher %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() {
			if err := d.Detach(); err != nil {
				t.Error(err)
			}
		})
		if seen[d.Path()] {
			t.Errorf("device %s handed out twice", d.Path())
		}
		seen[d.Path()] = true
		if got, _ := Find(paths[i]); !slices.Equal(got, []string{d.Path()}) {
			t.Errorf("Find(%s) = %v, want [%s]", paths[i], got, d.Path())
		}
	}

	retries := busyRetries.Load() - before
	wantMin := int64(0)
	for _, c := range first {
		wantMin += int64(c - 1) // all but one attacher per device lost the race
	}
	t.Logf("first round devices %v, %d retries", first, retries)
	if wantMin == 0 {
		t.Fatalf("attachers were handed distinct devices %v; the race was not provoked", first)
	}
	if retries < wantMin {
		t.Errorf("%d EBUSY retries, want at least %d", retries, wantMin)
	}
}
