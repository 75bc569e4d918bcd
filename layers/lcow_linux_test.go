package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// threeLayers makes, from OCI layer tars, a base layer, a layer adding /etc/hello
// and a layer deleting /deleted with a whiteout; it returns them top-most first.
func threeLayers(t *testing.T, dir string) []*LCOWLayer {
	base := tarLayerVHD(t, dir, "base", []tarEntry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/os", typ: tar.TypeReg, body: []byte("base")},
		{name: "etc/hello", typ: tar.TypeReg, body: []byte("old")},
		{name: "deleted", typ: tar.TypeReg, body: []byte("x")},
	})
	add := tarLayerVHD(t, dir, "add", []tarEntry{
		{name: "etc/hello", typ: tar.TypeReg, body: []byte("hello from layer 2\n")},
	})
	del := tarLayerVHD(t, dir, "del", []tarEntry{{name: ".wh.deleted", typ: tar.TypeReg}})
	return []*LCOWLayer{{VHDPath: del}, {VHDPath: add}, {VHDPath: base}}
}

func TestMountLCOWLayers(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	ls := &LCOWLayers{Layers: threeLayers(t, dir), ScratchVHDPath: filepath.Join(dir, "sandbox.vhd")}
	guest := filepath.Join(dir, "c1")

	rootfs, scratch, closer, err := MountLCOWLayers(ctx, "c1", ls, guest, nil, WithScratchSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	if rootfs != filepath.Join(guest, "rootfs") || scratch != guest {
		t.Errorf("got rootfs %s scratch %s, want %s/rootfs and %s", rootfs, scratch, guest, guest)
	}
	check := func(name, want string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(rootfs, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: got %q, %v; want %q", name, b, err, want)
		}
	}
	check("etc/hello", "hello from layer 2\n")
	check("etc/os", "base")
	if _, err := os.Lstat(filepath.Join(rootfs, "deleted")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted: got %v, want it hidden by the top layer's whiteout", err)
	}
	write(t, filepath.Join(rootfs, "etc", "written"), "kept")
	if _, err := os.Stat(filepath.Join(scratch, "upper", "etc", "written")); err != nil {
		t.Errorf("write did not land in the scratch's upper directory: %v", err)
	}
	if _, _, _, err := MountLCOWLayers(ctx, "c1", ls, guest, nil); !errors.Is(err, ErrAlreadyMounted) || !errors.Is(err, fs.ErrExist) {
		t.Errorf("mounting twice: got %v, want ErrAlreadyMounted", err)
	}
	other := filepath.Join(dir, "c2")
	if _, _, _, err := MountLCOWLayers(ctx, "c2", ls, other, nil); !errors.Is(err, ErrAlreadyMounted) || !strings.Contains(err.Error(), ls.ScratchVHDPath) {
		t.Errorf("a second stack on the same scratch: got %v, want ErrAlreadyMounted naming the scratch", err)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused mount left %s: %v", other, err)
	}
	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := closer.Release(ctx); err != nil {
		t.Errorf("second Release: %v", err)
	}
	checkNothingLeft(t, dir)

	// The scratch disk is a fixed VHD holding a clean ext4 file system.
	info, err := host.DetectDisk(ls.ScratchVHDPath)
	if err != nil || info.Format != host.FormatVHDFixed || info.Size != 64<<20 {
		t.Errorf("scratch: %+v, %v; want a 64 MiB fixed VHD", info, err)
	}
	if st, err := os.Stat(ls.ScratchVHDPath); err == nil {
		if alloc := st.Sys().(*syscall.Stat_t).Blocks * 512; alloc > st.Size()/2 {
			t.Errorf("scratch allocates %d of its %d bytes: want it sparse", alloc, st.Size())
		}
	}
	if out, err := exec.Command("e2fsck", "-fn", ls.ScratchVHDPath).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn of the scratch: %v\n%s", err, out)
	}
	if out, err := exec.Command("qemu-img", "check", "-f", "vpc", ls.ScratchVHDPath).CombinedOutput(); err != nil && !strings.Contains(string(out), "not support") {
		t.Logf("qemu-img check: %v\n%s", err, out)
	}

	// Mounting again reuses the scratch: what was written is still there.
	rootfs, _, closer, err = MountLCOWLayers(ctx, "c1", ls, guest, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("etc/written", "kept")
	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
}

// TestMountLCOWLayersUnwind fails each step of MountLCOWLayers in turn and checks that
// nothing is left: no mount, no loop device, no scratch disk, no directory made.
func TestMountLCOWLayersUnwind(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	layers := threeLayers(t, dir)
	var steps []string
	{
		ls := &LCOWLayers{Layers: layers, ScratchVHDPath: filepath.Join(dir, "probe.vhd")}
		_, _, c, err := MountLCOWLayers(ctx, "probe", ls, filepath.Join(dir, "probe"), nil, WithScratchSize(32<<20), func(o *options) error { o.steps = &steps; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("steps: %q", steps)
	if len(steps) < 10 {
		t.Fatalf("only %d steps recorded", len(steps))
	}
	for k := 1; k <= len(steps); k++ {
		t.Run(fmt.Sprintf("%d-%s", k, strings.ReplaceAll(steps[k-1], " ", "-")), func(t *testing.T) {
			sub := filepath.Join(dir, fmt.Sprint("run", k))
			ls := &LCOWLayers{Layers: layers, ScratchVHDPath: filepath.Join(sub, "scratch.vhd")}
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			guest := filepath.Join(sub, "guest", "root")
			_, _, c, err := MountLCOWLayers(ctx, "c", ls, guest, nil, WithScratchSize(32<<20), func(o *options) error { o.failAt = k; return nil })
			if !errors.Is(err, errInjected) || c != nil {
				t.Fatalf("got %v, %v; want the injected failure and no closer", c, err)
			}
			checkNothingLeft(t, sub)
			for _, p := range []string{ls.ScratchVHDPath, filepath.Join(sub, "guest")} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s left behind (%v)", p, err)
				}
			}
			if ents, _ := os.ReadDir(sub); len(ents) != 0 {
				t.Errorf("left in %s: %v", sub, ents)
			}
		})
	}
}

func TestMountLCOWLayersBadInput(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	good := layerVHD(t, dir, "good", func(r string) { write(t, filepath.Join(r, "f"), "x") })
	dyn := filepath.Join(dir, "dynamic.vhd")
	d, err := vhd.Create(dyn, vhd.CreateOptions{Type: vhd.DiskTypeDynamic, Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	notExt4 := filepath.Join(dir, "zeros.img")
	if err := os.WriteFile(notExt4, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk-scratch.img")
	junkData := bytes.Repeat([]byte("not a file system "), 4<<20/18)
	if err := os.WriteFile(junk, junkData, 0o644); err != nil {
		t.Fatal(err)
	}
	many := make([]*LCOWLayer, 501)
	for i := range many {
		many[i] = &LCOWLayer{VHDPath: good}
	}
	tests := []struct {
		name    string
		layers  []*LCOWLayer
		scratch string
		want    error
		path    string
	}{
		{"blank dynamic VHD layer", []*LCOWLayer{{VHDPath: good}, {VHDPath: dyn}}, "", nil, dyn},
		{"missing layer", []*LCOWLayer{{VHDPath: filepath.Join(dir, "nope.vhd")}}, "", fs.ErrNotExist, "nope.vhd"},
		{"not ext4", []*LCOWLayer{{VHDPath: notExt4}}, "", nil, notExt4},
		{"scratch neither ext4 nor blank", []*LCOWLayer{{VHDPath: good}}, junk, ErrUnsupportedDisk, junk},
		{"partition", []*LCOWLayer{{VHDPath: good, Partition: 1}}, "", ErrUnsupportedDisk, good},
		{"501 layers", many, "", ErrTooManyLayers, "501"},
		{"no layers", nil, "", ErrInvalidArgument, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, fmt.Sprint("case", i))
			os.Mkdir(sub, 0o755)
			scratch := tt.scratch
			if scratch == "" {
				scratch = filepath.Join(sub, "scratch.vhd")
			}
			_, _, _, err := MountLCOWLayers(ctx, "c", &LCOWLayers{Layers: tt.layers, ScratchVHDPath: scratch}, filepath.Join(sub, "root"), nil, WithScratchSize(32<<20))
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name %q", err, tt.path)
			}
			t.Log(err)
			checkNothingLeft(t, dir)
			if ents, _ := os.ReadDir(sub); len(ents) != 0 {
				t.Errorf("left in %s: %v", sub, ents)
			}
		})
	}
	if b, _ := os.ReadFile(junk); !bytes.Equal(b, junkData) {
		t.Error("the refused scratch disk was modified")
	}
	if _, _, _, err := MountLCOWLayers(ctx, "c", &LCOWLayers{Layers: []*LCOWLayer{{VHDPath: good}}, ScratchVHDPath: good}, dir, &UtilityVM{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("non-nil vm: got %v, want ErrUnsupported", err)
	}
}

// TestMountLCOWLayersDeep stacks 128 ext4 layer images (16 with -short), each adding
// a file and overriding a shared one: 128 loop devices and ext4 mounts under one union.
func TestMountLCOWLayersDeep(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	n := 128
	if testing.Short() {
		n = 16
	}
	ls := &LCOWLayers{ScratchVHDPath: filepath.Join(dir, "scratch.vhd")}
	for i := n - 1; i >= 0; i-- {
		img := tarLayerVHD(t, dir, fmt.Sprint("l", i), []tarEntry{
			{name: "shared", typ: tar.TypeReg, body: []byte(fmt.Sprint(i))},
			{name: fmt.Sprint("own", i), typ: tar.TypeReg},
		})
		ls.Layers = append([]*LCOWLayer{{VHDPath: img}}, ls.Layers...)
	}
	start := time.Now()
	rootfs, _, c, err := MountLCOWLayers(ctx, "deep", ls, filepath.Join(dir, "root"), nil, WithScratchSize(32<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d layers mounted in %v", n, time.Since(start))
	if b, _ := os.ReadFile(filepath.Join(rootfs, "shared")); string(b) != "0" {
		t.Errorf("shared: %q, want the top layer's 0", b)
	}
	for i := range n {
		if _, err := os.Stat(filepath.Join(rootfs, fmt.Sprint("own", i))); err != nil {
			t.Error(err)
		}
	}
	m, err := mountinfo.Lookup(rootfs)
	if err != nil || len(m) != 1 || m[0].Source != LCOWSourcePrefix+"deep" {
		t.Errorf("mountinfo of the union: %+v, %v", m, err)
	}
	start = time.Now()
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("released in %v", time.Since(start))
	checkNothingLeft(t, dir)
}

// TestMountLCOWLayersRawView mounts a layer converted to a dynamic VHD by qemu-img
// and a blank dynamic VHDX scratch, both through internal/attach's raw view; the
// scratch is formatted at the first mount and keeps its files to the next.
func TestMountLCOWLayersRawView(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not found (qemu-utils)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	fixed := layerVHD(t, dir, "base", func(r string) { write(t, filepath.Join(r, "hello"), "dynamic") })
	dyn := filepath.Join(dir, "base-dynamic.vhd")
	if out, err := exec.Command("qemu-img", "convert", "-f", "vpc", "-O", "vpc", "-o", "subformat=dynamic", fixed, dyn).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	scratch := filepath.Join(dir, "sandbox.vhdx")
	if err := vhd.CreateVHDX(scratch, vhd.VHDXCreateOptions{Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	ls := &LCOWLayers{Layers: []*LCOWLayer{{VHDPath: dyn}}, ScratchVHDPath: scratch}
	for round := range 2 {
		rootfs, _, c, err := MountLCOWLayers(ctx, "rv", ls, filepath.Join(dir, "root"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(rootfs, "hello")); err != nil || string(b) != "dynamic" {
			t.Errorf("hello: %q, %v", b, err)
		}
		if round == 0 {
			write(t, filepath.Join(rootfs, "kept"), "k")
		} else if _, err := os.Stat(filepath.Join(rootfs, "kept")); err != nil {
			t.Errorf("the VHDX scratch lost a file: %v", err)
		}
		if err := c.Release(ctx); err != nil {
			t.Fatal(err)
		}
		checkNothingLeft(t, dir)
	}

	// Two stacks share the dynamic layer: internal/attach attaches a disk once, so
	// the second stack mounts the same raw view, and only the last release ends it.
	r1, _, c1, err := MountLCOWLayers(ctx, "s1", &LCOWLayers{Layers: ls.Layers, ScratchVHDPath: filepath.Join(dir, "s1.vhd")}, filepath.Join(dir, "s1"), nil, WithScratchSize(32<<20))
	if err != nil {
		t.Fatal(err)
	}
	r2, _, c2, err := MountLCOWLayers(ctx, "s2", &LCOWLayers{Layers: ls.Layers, ScratchVHDPath: filepath.Join(dir, "s2.vhd")}, filepath.Join(dir, "s2"), nil, WithScratchSize(32<<20))
	if err != nil {
		c1.Release(ctx)
		t.Fatal(err)
	}
	// The first stack is taken down from the kernel's tables alone, as after a crash
	// (its closer is dropped); the shared raw view stays for the second.
	_, _ = r1, c1
	res, err := UnmountAll(ctx, filepath.Join(dir, "s1"), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.MountPoints) != 3 || len(res.Devices) != 1 {
		t.Errorf("UnmountAll: %+v; want the union, the layer and the scratch unmounted, and only the scratch's device detached", res)
	}
	if b, err := os.ReadFile(filepath.Join(r2, "hello")); err != nil || string(b) != "dynamic" {
		t.Errorf("the second stack lost the shared layer when the first was unmounted: %q, %v", b, err)
	}
	if err := c2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
	if _, err := UnmountAll(ctx, filepath.Join(dir, "s1"), false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UnmountAll with nothing mounted: got %v, want fs.ErrNotExist", err)
	}

	if out, err := exec.Command("qemu-img", "check", "-f", "vhdx", scratch).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check of the scratch: %v\n%s", err, out)
	}
}
