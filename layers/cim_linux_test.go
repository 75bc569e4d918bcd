package layers

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/wclayer/cim"
)

// TestReleaseCimFSHostLayers mounts a CIM layer for a container, stacks an
// overlay union over its Files/ at the scratch folder's mount path, and checks
// that ReleaseCimFSHostLayers takes both down and leaves no helper behind.
func TestReleaseCimFSHostLayers(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
	ctx := context.Background()
	dir := t.TempDir()
	layer := filepath.Join(dir, "base")
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sampletar.Write(pw, sampletar.Options{Seed: 2, Files: 20, Bytes: 1 << 20})) }()
	w, err := cim.NewCimLayerWriter(ctx, layer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.DecodeTar(ctx, pr, w.EntryWriter()); err != nil {
		w.Abort()
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	const container = "release-test"
	lower, err := cim.MountCimLayer(ctx, cim.GetCimPathFromLayer(layer), container)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := fusefs.List()
	if err != nil || len(rec) != 1 {
		t.Fatalf("fuse mounts %+v, %v", rec, err)
	}
	scratch := filepath.Join(dir, "scratch")
	union := filepath.Join(scratch, WCOWMountDir)
	for _, d := range []string{union, filepath.Join(scratch, "Files"), filepath.Join(scratch, WCOWWorkDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + filepath.Join(lower, "Files") + ",upperdir=" + filepath.Join(scratch, "Files") + ",workdir=" + filepath.Join(scratch, WCOWWorkDir)
	if err := unix.Mount("overlay", union, "overlay", 0, opts); err != nil {
		cim.CleanupContainerMounts(container)
		t.Fatalf("overlay over the CIM mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(union, "special", "streams.txt")); err != nil {
		t.Errorf("the union does not show the CIM's files: %v", err)
	}
	if err := ReleaseCimFSHostLayers(ctx, scratch, container); err != nil {
		t.Fatal(err)
	}
	ms, _ := mountinfo.Read()
	for _, m := range ms {
		if m.Mountpoint == union || m.Mountpoint == lower {
			t.Errorf("left mounted: %+v", m)
		}
	}
	if _, err := cim.GetCimMountPath(cim.GetCimPathFromLayer(layer), container); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CIM still mounted: %v", err)
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(rec[0].PID) + "/stat"); err == nil && !exited(string(b)) {
		t.Errorf("helper %d still running", rec[0].PID)
	}
	// Releasing again finds nothing to do.
	if err := ReleaseCimFSHostLayers(ctx, scratch, container); err != nil {
		t.Errorf("second release: %v", err)
	}
}

// exited reports whether a /proc/<pid>/stat line is a zombie's.
func exited(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}
