package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// testPlan is a plan with every built-in step type: a blank disk attached,
// formatted and mounted, a union over a lower directory with its upper on
// the disk, and a read-only view of the union.
func testPlan(t *testing.T, base string) Plan {
	disk := filepath.Join(base, "disk.img")
	f, err := os.Create(disk)
	must(t, err)
	must(t, f.Truncate(32<<20))
	f.Close()
	lower := filepath.Join(base, "lower")
	must(t, os.MkdirAll(lower, 0o755))
	must(t, os.WriteFile(filepath.Join(lower, "hello"), []byte("hi"), 0o644))
	mnt := filepath.Join(base, "m")
	return Plan{
		MkdirStep(filepath.Join(mnt, "disk")),
		LoopStep(disk, "disk", LoopOptions{}),
		FormatStep("@disk", "ext4", "t", true),
		FilesystemMount(TypeExt4, "@disk", filepath.Join(mnt, "disk"), false),
		MkdirStep(filepath.Join(mnt, "disk", "upper")),
		MkdirStep(filepath.Join(mnt, "disk", "work")),
		MkdirStep(filepath.Join(mnt, "root")),
		OverlayMount(filepath.Join(mnt, "root"), Overlay{Lower: []string{lower}, Upper: filepath.Join(mnt, "disk", "upper"), Work: filepath.Join(mnt, "disk", "work"), Source: "hcs-test"}),
		MkdirStep(filepath.Join(mnt, "view")),
		BindMount(filepath.Join(mnt, "root"), filepath.Join(mnt, "view"), true),
	}
}

// leftovers lists what is mounted under dir and the loop devices backed by
// files under it.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	ms, err := mountinfo.Read()
	must(t, err)
	for _, m := range mountinfo.Under(ms, dir) {
		out = append(out, "mount "+m.Mountpoint)
	}
	devs, err := loop.FindUnder(dir)
	must(t, err)
	for _, d := range devs {
		out = append(out, "loop "+d)
	}
	if _, err := os.Stat(filepath.Join(dir, "m")); err == nil {
		out = append(out, "directory "+filepath.Join(dir, "m"))
	}
	return out
}

func TestApplyAndUndo(t *testing.T) {
	needMountCaps(t)
	base := t.TempDir()
	plan := testPlan(t, base)
	u, err := (&Executor{}).Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(base, "m", "view")
	if b, err := os.ReadFile(filepath.Join(view, "hello")); err != nil || string(b) != "hi" {
		t.Errorf("hello through the view: %q, %v", b, err)
	}
	must(t, os.WriteFile(filepath.Join(base, "m", "root", "new"), nil, 0o644))
	if _, err := os.Stat(filepath.Join(base, "m", "disk", "upper", "new")); err != nil {
		t.Errorf("a write to the union did not land on the disk: %v", err)
	}
	if len(u.Steps()) == 0 {
		t.Fatal("no undo steps")
	}
	must(t, u.Release(context.Background()))
	if l := leftovers(t, base); len(l) > 0 {
		t.Errorf("left after the undo: %v", l)
	}
}

// TestFailureAtEveryStep fails each step of the plan in turn (through the
// executor's hook, and once the step itself) and checks that nothing of the
// plan is left.
func TestFailureAtEveryStep(t *testing.T) {
	needMountCaps(t)
	base := t.TempDir()
	plan := testPlan(t, base)
	injected := errors.New("injected")
	for i := range plan {
		t.Run(fmt.Sprint(i, "-", plan[i].Type), func(t *testing.T) {
			n := 0
			e := &Executor{Hook: func(m Mount) error {
				n++
				if n == i+1 {
					return injected
				}
				return nil
			}}
			_, err := e.Apply(context.Background(), plan)
			if !errors.Is(err, injected) {
				t.Fatalf("got %v, want the injected failure", err)
			}
			if l := leftovers(t, base); len(l) > 0 {
				t.Errorf("left after a failure at step %d (%s): %v", i, plan[i], l)
			}
		})
	}
	// A step that fails by itself: the union's lower is missing.
	bad := append(Plan{}, plan...)
	bad[7] = OverlayMount(bad[7].Target, Overlay{Lower: []string{filepath.Join(base, "missing")}, Upper: overlayOf(bad[7]).Upper, Work: overlayOf(bad[7]).Work})
	if _, err := (&Executor{}).Apply(context.Background(), bad); err == nil {
		t.Fatal("a union over a missing lower mounted")
	}
	if l := leftovers(t, base); len(l) > 0 {
		t.Errorf("left after a failing overlay step: %v", l)
	}
}

func TestApplyParallel(t *testing.T) {
	needMountCaps(t)
	base := t.TempDir()
	must(t, os.Mkdir(filepath.Join(base, "m"), 0o755))
	var plans []Plan
	for i := range 4 {
		d := filepath.Join(base, fmt.Sprint(i))
		must(t, os.MkdirAll(d, 0o755))
		plans = append(plans, Plan{MkdirStep(filepath.Join(base, "m", fmt.Sprint(i))), BindMount(d, filepath.Join(base, "m", fmt.Sprint(i)), true)})
	}
	u, err := (&Executor{}).ApplyParallel(context.Background(), plans, 2)
	must(t, err)
	if len(u.Steps()) != 8 {
		t.Errorf("%d undo steps, want 8", len(u.Steps()))
	}
	must(t, u.Release(context.Background()))
	plans[2][1].Source = filepath.Join(base, "missing")
	if _, err := (&Executor{}).ApplyParallel(context.Background(), plans, 2); err == nil {
		t.Fatal("no error from a failing plan")
	}
	must(t, os.Remove(filepath.Join(base, "m"))) // empty again
	if l := leftovers(t, base); len(l) > 0 {
		t.Errorf("left after a failing parallel apply: %v", l)
	}
}
