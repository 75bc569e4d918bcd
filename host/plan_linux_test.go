package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/vhd"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// needHost skips t without root or /dev/fuse and gives it its own state root.
func needHost(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	root := t.TempDir()
	t.Setenv("HOSTCOMPUTE_STATE_DIR", root)
	return root
}

// smallCIM writes a CIM holding Files/hello.
func smallCIM(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "layer.cim")
	w, err := cimfs.Create(dir, "layer.cim", "")
	if err != nil {
		t.Skipf("cimfs.Create: %v", err)
	}
	info := winfile.BasicInfo{FileAttributes: winfile.AttrDirectory}
	if err := w.Add(&cimfs.Header{Name: "Files", Info: info}); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&cimfs.Header{Name: "Files/hello", Info: winfile.BasicInfo{FileAttributes: winfile.AttrNormal}, Size: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// helpers returns the FUSE helper processes started with the state root.
func helpers(t *testing.T, root string) []string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmd, []byte("fusefs-helper")) && bytes.Contains(env, []byte("HOSTCOMPUTE_STATE_DIR="+root+"\x00")) {
			out = append(out, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

// leftovers lists what is mounted or attached under dirs, the attachment
// records and FUSE views of the state root, and its helper processes.
func leftovers(t *testing.T, root string, dirs ...string) []string {
	t.Helper()
	var out []string
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append(dirs, root) {
		for _, m := range mountinfo.Under(ms, d) {
			out = append(out, "mount "+m.Mountpoint)
		}
		devs, _ := loop.FindUnder(d)
		for _, dev := range devs {
			out = append(out, "loop "+dev)
		}
	}
	if as, _ := attach.List(); len(as) > 0 {
		out = append(out, fmt.Sprintf("attachments %+v", as))
	}
	if vs, _ := fusefs.List(); len(vs) > 0 {
		out = append(out, fmt.Sprintf("views %+v", vs))
	}
	return append(out, helpers(t, root)...)
}

// TestPlanFailureAtEveryStep applies a plan with every kind of step the
// engine has — a VHDX attached through a raw view (a helper process), its
// blank disk formatted and mounted, a CIM served by another helper, a union
// over the CIM's files with its upper on the disk — and fails each step in
// turn through the executor's hook: nothing may be left, neither mounts nor
// loop devices nor records nor helper processes.
func TestPlanFailureAtEveryStep(t *testing.T) {
	root := needHost(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "scratch.vhdx")
	if err := vhd.CreateVHDX(disk, vhd.VHDXCreateOptions{Size: 64 << 20, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	cim := smallCIM(t, dir)
	mnt := filepath.Join(dir, "m")
	plan := Plan{
		DiskStep(disk, "scratch", false, false),
		FormatStep("@scratch", "ext4", "scratch", true),
		MkdirStep(filepath.Join(mnt, "disk")),
		FilesystemMount(mount.TypeAuto, "@scratch", filepath.Join(mnt, "disk"), false),
		mount.KeepDirStep(filepath.Join(mnt, "disk", "upper")),
		mount.KeepDirStep(filepath.Join(mnt, "disk", "work")),
		MkdirStep(filepath.Join(mnt, "cim")),
		CIMStep(cim, filepath.Join(mnt, "cim"), "plan-test-cim", "plan-test"),
		MkdirStep(filepath.Join(mnt, "root")),
		OverlayMount(filepath.Join(mnt, "root"), Overlay{Lower: []string{filepath.Join(mnt, "cim", "Files")}, Upper: filepath.Join(mnt, "disk", "upper"), Work: filepath.Join(mnt, "disk", "work"), Source: "hcs-plan-test"}),
	}
	if err := ValidatePlan(plan); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "root", "hello")); err != nil || string(b) != "hi" {
		t.Errorf("hello through the union: %q, %v", b, err)
	}
	if h := helpers(t, root); len(h) != 2 {
		t.Errorf("helpers while applied: %q, want the raw view's and the CIM's", h)
	}
	if err := u.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, root, dir); len(l) > 0 {
		t.Fatalf("left after Release: %q", l)
	}
	injected := errors.New("injected")
	for i := range plan {
		t.Run(fmt.Sprint(i, "-", plan[i].Type), func(t *testing.T) {
			n := 0
			testHook = func(Mount) error {
				n++
				if n == i+1 {
					return injected
				}
				return nil
			}
			defer func() { testHook = nil }()
			if _, err := Apply(ctx, plan); !errors.Is(err, injected) {
				t.Fatalf("got %v, want the injected failure", err)
			}
			if l := leftovers(t, root, dir); len(l) > 0 {
				t.Errorf("left after a failure at step %d (%s): %q", i, plan[i], l)
			}
		})
	}
}

// TestPlanWithoutRoot: planning reads disk headers only; it needs no
// privileges and makes nothing.
func TestPlanWithoutRoot(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "layer.img")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	vhdx := filepath.Join(dir, "layer.vhdx")
	if err := vhd.CreateVHDX(vhdx, vhd.VHDXCreateOptions{Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	plans, err := LCOWPlan(LCOWStack{Layers: []string{raw, vhdx}, Root: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 2 || plans[0][1].Type != mount.TypeLoop || plans[1][1].Type != TypeDisk || !hasOption(plans[1][1], "shared") {
		t.Fatalf("plans %v: want a loop device for the raw image and a shared disk step for the VHDX", plans)
	}
	for i, p := range plans {
		last := p[len(p)-1]
		if last.Type != mount.TypeExt4 || last.Target != fmt.Sprintf("/r/layers/%d", i) || !hasOption(last, "ro") {
			t.Errorf("plan %d ends with %v", i, last)
		}
		if err := ValidatePlan(p); err != nil {
			t.Error(err)
		}
	}
	if _, err := LCOWPlan(LCOWStack{Layers: []string{filepath.Join(dir, "missing")}, Root: "/r"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing layer: %v", err)
	}
}

// TestUnapply takes an applied plan down from the plan alone, as another
// process would after the one that applied it died, and again (nothing left
// to do).
func TestUnapply(t *testing.T) {
	root := needHost(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "scratch.vhdx")
	if err := vhd.CreateVHDX(disk, vhd.VHDXCreateOptions{Size: 64 << 20, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cim := smallCIM(t, dir)
	mnt := filepath.Join(dir, "m")
	plan := Plan{
		MkdirStep(mnt), // Unapply removes a step's directory, not the parents it made
		DiskStep(disk, "scratch", false, false),
		FormatStep("@scratch", "ext4", "", true),
		MkdirStep(filepath.Join(mnt, "disk")),
		FilesystemMount(mount.TypeExt4, "@scratch", filepath.Join(mnt, "disk"), false),
		mount.LoopStep(raw, "raw", mount.LoopOptions{}),
		FormatStep("@raw", "ext4", "", true),
		MkdirStep(filepath.Join(mnt, "raw")),
		FilesystemMount(mount.TypeExt4, "@raw", filepath.Join(mnt, "raw"), true),
		MkdirStep(filepath.Join(mnt, "cim")),
		CIMStep(cim, filepath.Join(mnt, "cim"), "unapply-test", ""),
		MkdirStep(filepath.Join(mnt, "view")),
		BindMount(filepath.Join(mnt, "cim"), filepath.Join(mnt, "view"), true),
	}
	ctx := context.Background()
	if _, err := Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	// The undo is dropped, as by a process that exited.
	if err := Unapply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, root, dir); len(l) > 0 {
		t.Errorf("left after Unapply: %q", l)
	}
	if _, err := os.Stat(mnt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left: %v", mnt, err)
	}
	if err := Unapply(ctx, plan); err != nil {
		t.Errorf("Unapply of a plan already undone: %v", err)
	}
}
