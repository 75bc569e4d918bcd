package cim

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/basedisk"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// writeOSLayer writes a tiny Windows OS image as the CIM layer path: the
// registry hives under Files/Windows/System32/config, and, for a child,
// delta hives under Hives/.
func writeOSLayer(t *testing.T, path string, parents []string, extra func(cw *CimLayerWriter)) error {
	t.Helper()
	ctx := context.Background()
	cw, err := NewCimLayerWriter(ctx, path, parents)
	if err != nil {
		return err
	}
	dir := &winfile.BasicInfo{FileAttributes: winfile.AttrDirectory, LastWriteTime: 133_000_000_000_000_000}
	file := &winfile.BasicInfo{FileAttributes: winfile.AttrArchive, LastWriteTime: 133_000_000_000_000_000}
	add := func(name string, data string) {
		t.Helper()
		info := file
		if data == "" {
			info = dir
		}
		if err := cw.Add(name, info, int64(len(data)), nil, nil, nil); err != nil {
			t.Fatalf("Add %s: %v", name, err)
		}
		if _, err := io.WriteString(cw, data); err != nil {
			t.Fatal(err)
		}
	}
	add("Files", "")
	if len(parents) == 0 {
		for _, d := range []string{`Files\Windows`, `Files\Windows\System32`, `Files\Windows\System32\config`} {
			add(d, "")
		}
		for _, h := range basedisk.Hives {
			add(`Files\Windows\System32\config\`+h[0], "regf "+h[0])
		}
	} else {
		add("Hives", "")
		add(`Hives\Software_Delta`, "regf delta")
	}
	if extra != nil {
		extra(cw)
	}
	return cw.Close(ctx)
}

// TestCloseBaseLayer: Close of a base OS layer makes Hives/*_BASE, the
// layout file and the scratch template disks, in the folder and the CIM; of a
// child with delta hives it commits the CIM and says the merge is missing.
func TestCloseBaseLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the template disks are formatted through loop devices and FUSE: needs root")
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if err := writeOSLayer(t, base, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, h := range basedisk.Hives {
		var a, b unix.Stat_t
		if unix.Stat(filepath.Join(base, "Files/Windows/System32/config", h[0]), &a) != nil ||
			unix.Stat(filepath.Join(base, "Hives", h[1]), &b) != nil || a.Ino != b.Ino {
			t.Errorf("Hives/%s is not a link to the image's %s hive in the layer folder", h[1], h[0])
		}
	}
	if b, err := os.ReadFile(filepath.Join(base, basedisk.LayoutFile)); err != nil || string(b) != "vhd-with-hives\n" {
		t.Errorf("layout file: %q, %v", b, err)
	}
	for _, d := range []string{basedisk.ContainerScratchTemplateBase, basedisk.ContainerScratchTemplate} {
		if _, err := attach.Detect(filepath.Join(base, d)); err != nil {
			t.Errorf("template disk %s: %v", d, err)
		}
	}
	im, err := OpenLayer(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range basedisk.Hives {
		a, err1 := im.Lookup("Files/Windows/System32/config/" + h[0])
		b, err2 := im.Lookup("Hives/" + h[1])
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("in the CIM, Hives/%s is not a link to %s: %v %v", h[1], h[0], err1, err2)
		}
	}
	if f, err := im.Open(basedisk.LayoutFile); err != nil {
		t.Errorf("layout in the CIM: %v", err)
	} else if b, _ := io.ReadAll(f); string(b) != "vhd-with-hives\n" {
		t.Errorf("layout in the CIM: %q", b)
	}
	im.Close()

	child := filepath.Join(dir, "child")
	err = writeOSLayer(t, child, []string{base}, nil)
	if !errors.Is(err, ErrHiveMergeUnsupported) || !errors.Is(err, errors.ErrUnsupported) || !IsWrittenWithLimits(err) {
		t.Fatalf("Close of a child with delta hives: %v, want ErrHiveMergeUnsupported", err)
	}
	if !IsCimLayer(child) {
		t.Error("the child's CIM was not committed")
	}
	if as, _ := attach.List(); len(as) > 0 {
		t.Errorf("attachments left: %+v", as)
	}
}

// TestConcurrentWriters: of two writers of one layer, exactly one gets to
// write; the other fails with ErrLayerBusy and leaves the winner's layer
// alone.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "layer")
	ctx := context.Background()
	first, err := NewCimLayerWriter(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cw, err := NewCimLayerWriter(ctx, path, nil)
			if err == nil {
				cw.Abort()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, ErrLayerBusy) || !errors.Is(err, os.ErrExist) {
			t.Errorf("second writer: %v, want ErrLayerBusy", err)
		}
	}
	if err := first.Add("Files", &winfile.BasicInfo{FileAttributes: winfile.AttrDirectory}, 0, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCimLayerWriter(ctx, path, nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("writer after the commit: %v", err)
	}
	if _, err := os.Stat(path); err != nil || !IsCimLayer(path) {
		t.Errorf("the winner's layer: %v", err)
	}
}
