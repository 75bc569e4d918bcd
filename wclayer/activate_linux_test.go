package wclayer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/proctest"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

// needLayerState is needDisks plus a private layer state directory, so that
// tests never meet other packages' attachments, helpers or layers.
func needLayerState(t *testing.T) string {
	t.Helper()
	needDisks(t)
	dir := t.TempDir()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", dir)
	dir = filepath.Join(dir, "layers")
	t.Cleanup(func() {
		// A failed test may leave mounts: take them down so TempDir can go.
		ms, _ := mountinfo.Read()
		for i := len(ms) - 1; i >= 0; i-- {
			if strings.HasPrefix(ms[i].Mountpoint, dir+"/") {
				exec.Command("umount", "-l", ms[i].Mountpoint).Run()
			}
		}
		if as, _ := attach.List(); len(as) > 0 {
			for _, a := range as {
				attach.Detach(context.Background(), a.Device)
			}
		}
	})
	return dir
}

func importTar(t *testing.T, path string, o sampletar.Options, parents []string) {
	t.Helper()
	var buf bytes.Buffer
	if err := sampletar.Write(&buf, o); err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.ImportLayerFromTar(context.Background(), &buf, path, parents); err != nil {
		t.Fatal(err)
	}
}

func regular(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layerStack imports a base and a child layer that deletes one base file the
// child does not add again, and returns them with the deleted name.
func layerStack(t *testing.T, dir string) (base, top, gone string) {
	t.Helper()
	base, top = filepath.Join(dir, "base"), filepath.Join(dir, "top")
	importTar(t, base, sampletar.Options{Seed: 1, Files: 20, Bytes: 64 << 10}, nil)
	topOpts := sampletar.Options{Seed: 2, Files: 10, Bytes: 64 << 10}
	probe := filepath.Join(dir, "probe")
	importTar(t, probe, topOpts, []string{base})
	inTop := regular(t, filepath.Join(probe, "Files"))
	for f := range regular(t, filepath.Join(base, "Files")) {
		if !inTop[f] && (gone == "" || f < gone) {
			gone = f
		}
	}
	if gone == "" {
		t.Fatal("every base file is in the top layer")
	}
	topOpts.Whiteouts = []string{"Files/" + gone}
	importTar(t, top, topOpts, []string{base})
	return base, top, gone
}

// checkNothingLeft: no mount under the state directory, no attachment, no
// FUSE helper state.
func checkNothingLeft(t *testing.T, state string) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	if u := mountinfo.Under(ms, state); len(u) > 0 {
		t.Errorf("mounts left under %s: %+v", state, u)
	}
	if as, err := attach.List(); err != nil || len(as) > 0 {
		t.Errorf("attachments left: %+v %v", as, err)
	}
	if es, _ := os.ReadDir(fusefs.StateDir()); len(es) > 0 {
		t.Errorf("FUSE helper state left: %d entries in %s", len(es), fusefs.StateDir())
	}
	if es, _ := os.ReadDir(state); len(es) > 0 {
		t.Errorf("layer state left: %d entries in %s", len(es), state)
	}
}

func TestActivatePrepareLayer(t *testing.T) {
	state := needLayerState(t)
	ctx := context.Background()
	dir := t.TempDir()
	base, top, gone := layerStack(t, dir)
	parents := []string{top, base}
	scratch := filepath.Join(dir, "scratch")
	if err := CreateScratchLayerWithOptions(ctx, scratch, parents, WithScratchSize(256<<20)); err != nil {
		t.Fatal(err)
	}
	if chain, err := os.ReadFile(filepath.Join(scratch, "layerchain.json")); err != nil || !strings.Contains(string(chain), top) {
		t.Fatalf("layerchain.json: %s %v", chain, err)
	}
	if out, err := exec.Command("qemu-img", "info", filepath.Join(scratch, ScratchDisk)).CombinedOutput(); err != nil || !strings.Contains(string(out), "file format: vhdx") || !strings.Contains(string(out), "256 MiB") {
		t.Fatalf("qemu-img info: %s %v", out, err)
	}
	if err := CreateScratchLayer(ctx, scratch, parents); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateScratchLayer: %v, want fs.ErrExist", err)
	}
	if p, err := GetLayerMountPath(ctx, scratch); err != nil || p != scratch {
		t.Errorf("mount path before activation: %q %v", p, err)
	}

	baseFiles, topFiles := regular(t, filepath.Join(base, "Files")), regular(t, filepath.Join(top, "Files"))
	for round := 0; round < 2; round++ {
		if err := ActivateLayer(ctx, scratch); err != nil {
			t.Fatal(err)
		}
		vol, err := GetLayerMountPath(ctx, scratch)
		if err != nil || !strings.HasPrefix(vol, state) || filepath.Base(vol) != host.VolumeDir {
			t.Fatalf("volume path %q %v", vol, err)
		}
		if ms, _ := mountinfo.Lookup(vol); len(ms) != 1 || ms[0].FSType != "ext4" {
			t.Fatalf("volume mounts: %+v", ms)
		}
		if err := PrepareLayer(ctx, scratch, parents); err != nil {
			t.Fatal(err)
		}
		union, err := GetLayerMountPath(ctx, scratch)
		if err != nil || filepath.Base(union) != host.UnionDir {
			t.Fatalf("union path %q %v", union, err)
		}
		got := regular(t, union)
		for f := range topFiles {
			if !got[f] {
				t.Errorf("top file %s missing from the union", f)
			}
		}
		for f := range baseFiles {
			if f != gone && !got[f] {
				t.Errorf("base file %s missing from the union", f)
			}
		}
		if got[gone] {
			t.Errorf("%s deleted by the top layer is visible", gone)
		}
		if round == 0 {
			if err := os.WriteFile(filepath.Join(union, "written.txt"), []byte("kept"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if b, err := os.ReadFile(filepath.Join(union, "written.txt")); err != nil || string(b) != "kept" {
			t.Errorf("file written in the first round: %q %v", b, err)
		}
		if err := UnprepareLayer(ctx, scratch); err != nil {
			t.Fatal(err)
		}
		if p, _ := GetLayerMountPath(ctx, scratch); p != vol {
			t.Errorf("after unprepare the mount path is %q, want the volume %q", p, vol)
		}
		if err := DeactivateLayer(ctx, scratch); err != nil {
			t.Fatal(err)
		}
		checkNothingLeft(t, state)
		if p, _ := GetLayerMountPath(ctx, scratch); p != scratch {
			t.Errorf("after deactivate the mount path is %q", p)
		}
	}
	// The write went to the scratch disk, not the parents.
	if _, err := os.Stat(filepath.Join(top, "Files", "written.txt")); err == nil {
		t.Error("written.txt reached the top layer")
	}
	checkNothingLeft(t, state)
}

func TestActivateLayerRefCount(t *testing.T) {
	state := needLayerState(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, base, sampletar.Options{Seed: 3, Files: 5, Bytes: 8 << 10}, nil)
	scratch := filepath.Join(dir, "scratch")
	if err := CreateScratchLayerWithOptions(ctx, scratch, []string{base}, WithScratchSize(64<<20)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ActivateLayer(ctx, scratch); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := PrepareLayer(ctx, scratch, []string{base}); err != nil {
			t.Fatal(err)
		}
	}
	if err := PrepareLayer(ctx, scratch, []string{base, base}); !errors.Is(err, ErrParentsDiffer) {
		t.Errorf("prepare with other parents: %v", err)
	}
	if a, p, err := host.LayerState(ctx, scratch); a != 2 || p != 2 || err != nil {
		t.Fatalf("counts %d %d %v", a, p, err)
	}
	if err := DeactivateLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	if err := DeactivateLayer(ctx, scratch); !errors.Is(err, ErrStillPrepared) || !strings.Contains(err.Error(), scratch) {
		t.Errorf("last deactivate while prepared: %v", err)
	}
	for range 2 {
		if err := UnprepareLayer(ctx, scratch); err != nil {
			t.Fatal(err)
		}
	}
	if err := UnprepareLayer(ctx, scratch); !errors.Is(err, ErrNotPrepared) {
		t.Errorf("extra unprepare: %v", err)
	}
	if err := DeactivateLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	if err := DeactivateLayer(ctx, scratch); !errors.Is(err, ErrNotActivated) {
		t.Errorf("extra deactivate: %v", err)
	}
	checkNothingLeft(t, state)
}

func TestActivateLayerErrors(t *testing.T) {
	state := needLayerState(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, base, sampletar.Options{Seed: 4, Files: 3, Bytes: 4 << 10}, nil)

	// A read-only layer: activation is a no-op, preparing it is refused.
	if err := ActivateLayer(ctx, base); err != nil {
		t.Errorf("activate read-only layer: %v", err)
	}
	if p, err := GetLayerMountPath(ctx, base); err != nil || p != base {
		t.Errorf("read-only mount path %q %v", p, err)
	}
	if err := PrepareLayer(ctx, base, nil); !errors.Is(err, ErrNotScratch) || !strings.Contains(err.Error(), base) {
		t.Errorf("prepare read-only layer: %v", err)
	}
	if err := DeactivateLayer(ctx, base); err != nil {
		t.Errorf("deactivate read-only layer: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if err := ActivateLayer(ctx, missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("activate missing layer: %v", err)
	}
	if err := CreateScratchLayer(ctx, filepath.Join(dir, "s0"), []string{missing}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("scratch over a missing parent: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s0")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed CreateScratchLayer left its folder: %v", err)
	}

	scratch := filepath.Join(dir, "scratch")
	if err := CreateScratchLayerWithOptions(ctx, scratch, []string{base}, WithScratchSize(64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := PrepareLayer(ctx, scratch, []string{base}); !errors.Is(err, ErrNotActivated) {
		t.Errorf("prepare before activate: %v", err)
	}
	if err := ActivateLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	// A parent that went away: named, nothing mounted, nothing counted.
	if err := PrepareLayer(ctx, scratch, []string{missing}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("prepare over a missing parent: %v", err)
	}
	if _, p, _ := host.LayerState(ctx, scratch); p != 0 {
		t.Errorf("failed prepare counted: %d", p)
	}
	if err := DeactivateLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, state)
}

// TestActivateLayerCrash: a process that activated a layer is killed before
// it prepares it; the next process finds the layer active, prepares it, and
// its Deactivate leaves no mount, loop device or helper behind.
func TestActivateLayerCrash(t *testing.T) {
	state := needLayerState(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, base, sampletar.Options{Seed: 5, Files: 5, Bytes: 8 << 10}, nil)
	scratch := filepath.Join(dir, "scratch")
	if err := CreateScratchLayerWithOptions(ctx, scratch, []string{base}, WithScratchSize(64<<20)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), activateChildEnv+"="+scratch)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "activated\n" {
		proctest.KillWait(cmd.Process.Pid, proctest.Timeout)
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	if err := proctest.KillWait(cmd.Process.Pid, proctest.Timeout); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	vol, err := GetLayerMountPath(ctx, scratch)
	if err != nil || filepath.Base(vol) != host.VolumeDir {
		t.Fatalf("after the crash the mount path is %q %v, want the volume", vol, err)
	}
	if err := PrepareLayer(ctx, scratch, []string{base}); err != nil {
		t.Fatal(err)
	}
	if err := UnprepareLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	if err := DeactivateLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, state)
}

// activateChildEnv names the layer a re-executed test binary activates
// before it waits to be killed.
const activateChildEnv = "HOSTCOMPUTE_TEST_ACTIVATE_CHILD"

func runActivateChild() {
	p := os.Getenv(activateChildEnv)
	if p == "" {
		return
	}
	if err := ActivateLayer(context.Background(), p); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("activated\n")
	select {}
}

// BenchmarkCreateScratchLayer measures making a scratch layer with the
// default 20 GiB sparse VHDX formatted ext4.
func BenchmarkCreateScratchLayer(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for loop devices")
	}
	b.Setenv("HOSTCOMPUTE_STATE_DIR", b.TempDir())
	dir := b.TempDir()
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if err := CreateScratchLayer(ctx, filepath.Join(dir, strconv.Itoa(i)), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkActivatePrepare measures one ActivateLayer + PrepareLayer and
// their inverses over a two-layer parent chain.
func BenchmarkActivatePrepare(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for loop devices and mounts")
	}
	b.Setenv("HOSTCOMPUTE_STATE_DIR", b.TempDir())
	ctx := context.Background()
	dir := b.TempDir()
	base, top := filepath.Join(dir, "base"), filepath.Join(dir, "top")
	for i, p := range []string{base, top} {
		var buf bytes.Buffer
		if err := sampletar.Write(&buf, sampletar.Options{Seed: uint64(30 + i), Files: 50, Bytes: 1 << 20}); err != nil {
			b.Fatal(err)
		}
		var parents []string
		if i == 1 {
			parents = []string{base}
		}
		if _, err := ociwclayer.ImportLayerFromTar(ctx, &buf, p, parents); err != nil {
			b.Fatal(err)
		}
	}
	scratch := filepath.Join(dir, "scratch")
	if err := CreateScratchLayer(ctx, scratch, []string{top, base}); err != nil {
		b.Fatal(err)
	}
	var act, prep, unprep, deact time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := ActivateLayer(ctx, scratch); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := PrepareLayer(ctx, scratch, []string{top, base}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := UnprepareLayer(ctx, scratch); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if err := DeactivateLayer(ctx, scratch); err != nil {
			b.Fatal(err)
		}
		act, prep, unprep, deact = act+t1.Sub(t0), prep+t2.Sub(t1), unprep+t3.Sub(t2), deact+time.Since(t3)
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(act/n)/1e6, "activate-ms")
	b.ReportMetric(float64(prep/n)/1e6, "prepare-ms")
	b.ReportMetric(float64(unprep/n)/1e6, "unprepare-ms")
	b.ReportMetric(float64(deact/n)/1e6, "deactivate-ms")
}
