package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// setup gives the test private state directories and a layer folder with a
// raw ext4 scratch disk and one parent whose Files/ holds a.txt.
func setup(t *testing.T) (state, layer, disk, parent string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4 (e2fsprogs)")
	}
	state = t.TempDir()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", state)
	state = filepath.Join(state, "layers")
	t.Cleanup(func() {
		ms, _ := mountinfo.Read()
		for i := len(ms) - 1; i >= 0; i-- {
			if strings.HasPrefix(ms[i].Mountpoint, state+"/") {
				exec.Command("umount", "-l", ms[i].Mountpoint).Run()
			}
		}
		as, _ := attach.List()
		for _, a := range as {
			attach.Detach(context.Background(), a.Device)
		}
	})
	dir := t.TempDir()
	layer, parent = filepath.Join(dir, "layer"), filepath.Join(dir, "parent")
	if err := os.MkdirAll(filepath.Join(parent, "Files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "Files", "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	disk = filepath.Join(layer, "sandbox.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", disk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return state, layer, disk, parent
}

func nothingLeft(t *testing.T, state string) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	if u := mountinfo.Under(ms, state); len(u) > 0 {
		t.Errorf("mounts left: %+v", u)
	}
	if as, _ := attach.List(); len(as) > 0 {
		t.Errorf("attachments left: %+v", as)
	}
	if es, _ := os.ReadDir(state); len(es) > 0 {
		t.Errorf("state left: %d entries", len(es))
	}
}

// TestCrashDuringFirstActivate: a process died after attaching and mounting
// but before saving its count (the record says Pending). The next call
// undoes both.
func TestCrashDuringFirstActivate(t *testing.T) {
	state, layer, disk, _ := setup(t)
	ctx := context.Background()
	abs, _ := filepath.Abs(layer)
	e, err := open(abs, kindLayer)
	if err != nil {
		t.Fatal(err)
	}
	e.rec.Pending, e.rec.Disk = true, disk
	if err := e.save(); err != nil {
		t.Fatal(err)
	}
	if err := mountVolume(ctx, disk, filepath.Join(e.dir, VolumeDir)); err != nil {
		t.Fatal(err)
	}
	e.close() // the crash: the lock goes with the process, the record stays
	if _, err := attach.Get(disk); err != nil {
		t.Fatalf("the simulated crash left no attachment: %v", err)
	}
	if p, err := MountPath(ctx, layer); err != nil || p != "" {
		t.Fatalf("mount path after the crash: %q %v", p, err)
	}
	nothingLeft(t, state)
}

// TestLeftoverUnion: a union mounted by a Prepare that died before it saved
// its count is unmounted by the next call; Deactivate then cleans up.
func TestLeftoverUnion(t *testing.T) {
	state, layer, disk, parent := setup(t)
	ctx := context.Background()
	if err := Activate(ctx, layer, disk); err != nil {
		t.Fatal(err)
	}
	dir := key(mustAbs(t, layer))
	if err := mountUnion(filepath.Join(dir, VolumeDir), filepath.Join(dir, UnionDir), []string{parent}, UnionSourcePrefix+layer); err != nil {
		t.Fatal(err)
	}
	if err := Deactivate(ctx, layer); err != nil {
		t.Fatal(err)
	}
	nothingLeft(t, state)
}

// TestVanishedMounts: mounts removed behind the engine's back are made again
// by the next Activate and Prepare, and the counts stay right.
func TestVanishedMounts(t *testing.T) {
	state, layer, disk, parent := setup(t)
	ctx := context.Background()
	if err := Activate(ctx, layer, disk); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(ctx, layer, []string{parent}); err != nil {
		t.Fatal(err)
	}
	union, _ := MountPath(ctx, layer)
	if err := mount.Unmount(union); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(ctx, layer, []string{parent}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(union, "a.txt")); err != nil || string(b) != "a" {
		t.Errorf("remounted union: %q %v", b, err)
	}
	for range 2 {
		if err := Unprepare(ctx, layer); err != nil {
			t.Fatal(err)
		}
	}
	vol, _ := MountPath(ctx, layer)
	if err := mount.Unmount(vol); err != nil {
		t.Fatal(err)
	}
	if err := Activate(ctx, layer, disk); err != nil {
		t.Fatal(err)
	}
	if a, p, err := LayerState(ctx, layer); a != 2 || p != 0 || err != nil {
		t.Errorf("counts %d %d %v", a, p, err)
	}
	if ms, _ := mountinfo.Lookup(vol); len(ms) != 1 {
		t.Errorf("volume not mounted again: %+v", ms)
	}
	for range 2 {
		if err := Deactivate(ctx, layer); err != nil {
			t.Fatal(err)
		}
	}
	nothingLeft(t, state)
}

// TestConcurrentActivate: activations from many goroutines at once are all
// counted, and as many deactivations clean up.
func TestConcurrentActivate(t *testing.T) {
	state, layer, disk, parent := setup(t)
	ctx := context.Background()
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for range n {
		wg.Go(func() {
			if err := Activate(ctx, layer, disk); err != nil {
				errs <- err
				return
			}
			errs <- Prepare(ctx, layer, []string{parent})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if a, p, err := LayerState(ctx, layer); a != n || p != n || err != nil {
		t.Fatalf("counts %d %d %v, want %d", a, p, err, n)
	}
	for range n {
		wg.Go(func() {
			if err := Unprepare(ctx, layer); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for range n {
		wg.Go(func() {
			if err := Deactivate(ctx, layer); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	nothingLeft(t, state)
}

// TestOverlayLeftover: an overlay over a volume with no count (a crashed
// AttachOverlay) is removed by the next call; AttachOverlay refuses a
// missing volume.
func TestOverlayLeftover(t *testing.T) {
	state, _, disk, parent := setup(t)
	ctx := context.Background()
	vol := filepath.Join(t.TempDir(), "vol")
	a, err := attach.Attach(ctx, disk, attach.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountDev(ctx, a.Device, vol, false); err != nil {
		t.Fatal(err)
	}
	defer func() {
		mount.Unmount(vol)
		attach.Detach(ctx, a.Device)
	}()
	if err := mountUnion(vol, vol, []string{parent}, OverlaySourcePrefix+vol); err != nil {
		t.Fatal(err)
	}
	if err := DetachOverlay(ctx, vol); !errors.Is(err, ErrNotPrepared) {
		t.Errorf("detach of an uncounted overlay: %v", err)
	}
	if ms, _ := mountinfo.Lookup(vol); len(ms) != 1 || ms[0].FSType != "ext4" {
		t.Errorf("mounts at the volume: %+v", ms)
	}
	missing := filepath.Join(t.TempDir(), "none")
	if err := AttachOverlay(ctx, missing, []string{parent}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(fmt.Sprint(err), missing) {
		t.Errorf("missing volume: %v", err)
	}
	if es, _ := os.ReadDir(state); len(es) > 0 {
		t.Errorf("state left: %d entries", len(es))
	}
}

// TestCorruptRecord: a record that does not parse, or names another path, is
// refused with ErrCorruptState and the file named.
func TestCorruptRecord(t *testing.T) {
	_, layer, _, _ := setup(t)
	ctx := context.Background()
	dir := key(mustAbs(t, layer))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"{", `{"version":1,"kind":"layer","path":"/elsewhere"}`} {
		if err := os.WriteFile(filepath.Join(dir, recordFile), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := MountPath(ctx, layer)
		if !errors.Is(err, ErrCorruptState) || !strings.Contains(err.Error(), filepath.Join(dir, recordFile)) {
			t.Errorf("record %q: %v", data, err)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSymlinkedLayer: a layer reached through a symbolic link is the same
// layer, with one count.
func TestSymlinkedLayer(t *testing.T) {
	state, layer, disk, _ := setup(t)
	ctx := context.Background()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(layer, link); err != nil {
		t.Fatal(err)
	}
	if err := Activate(ctx, layer, disk); err != nil {
		t.Fatal(err)
	}
	if err := Activate(ctx, link, filepath.Join(link, filepath.Base(disk))); err != nil {
		t.Fatal(err)
	}
	if a, _, err := LayerState(ctx, link); a != 2 || err != nil {
		t.Fatalf("activations through the link: %d %v", a, err)
	}
	for _, p := range []string{link, layer} {
		if err := Deactivate(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	nothingLeft(t, state)
}
