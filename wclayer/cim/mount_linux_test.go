package cim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/proctest"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

// TestMain lets the test binary serve as the FUSE helper of its mounts, and
// as the child process of the crash test.
func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	if os.Getenv("CIM_TEST_CHILD") == "mount" {
		p, err := MountCimLayer(context.Background(), os.Getenv("CIM_TEST_CIM"), os.Getenv("CIM_TEST_CONTAINER"))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(p)
		time.Sleep(time.Hour)
		return
	}
	os.Exit(m.Run())
}

func needMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE mounts with allow_other")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

// sampleLayer writes a sample layer tar as the CIM layer dir/name.
func sampleLayer(t *testing.T, dir, name string, seed uint64) string {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(sampletar.Write(pw, sampletar.Options{Seed: seed, Files: 30, Bytes: 1 << 20}))
	}()
	layer := filepath.Join(dir, name)
	cw, err := NewCimLayerWriter(context.Background(), layer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.DecodeTar(context.Background(), pr, cw.EntryWriter()); err != nil {
		cw.Abort()
		t.Fatal(err)
	}
	if err := cw.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return GetCimPathFromLayer(layer)
}

// checkNoMount fails the test if containerID left a mount, a helper, a state
// record or a mount point.
func checkNoMount(t *testing.T, containerID string, helperPID int) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	// Only this test's directories count: the source names the container
	// alone, and another test binary running at the same time may mount the
	// same container name in directories of its own.
	for _, dir := range []string{MountDir(), fusefs.StateDir()} {
		for _, m := range mountinfo.Under(ms, dir) {
			if m.Source == "hostcompute:"+mountID(containerID) || m.Mountpoint == mountPoint(containerID) {
				t.Errorf("mount left behind: %+v", m)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(fusefs.StateDir(), mountID(containerID))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state record left behind: %v", err)
	}
	if _, err := os.Stat(mountPoint(containerID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mount point left behind: %v", err)
	}
	if helperPID > 0 {
		if err := proctest.WaitExit(helperPID, proctest.Timeout); err != nil {
			t.Errorf("helper left: %v", err)
		}
	}
}

func TestMountCimLayer(t *testing.T) {
	needMounts(t)
	ctx := context.Background()
	dir := t.TempDir()
	cimA := sampleLayer(t, dir, "a", 1)
	cimB := sampleLayer(t, dir, "b", 2)
	const container = "0123456789abcdef-test"

	if _, err := GetCimMountPath(cimA, container); !errors.Is(err, ErrNotMounted) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetCimMountPath before mounting: %v", err)
	}
	p, err := MountCimLayer(ctx, cimA, container)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(MountDir(), VolumeGUID(container).String()); p != want {
		t.Errorf("mounted at %s, want %s", p, want)
	}
	if g := VolumeGUID(container); g.String()[14] != '5' || g != VolumeGUID(container) || g == VolumeGUID(container+"x") {
		t.Errorf("volume GUID %s is not a stable version-5 GUID of the ID", g)
	}
	im, err := OpenLayer(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := im.Open(`Files\special\streams.txt`)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(f)
	im.Close()
	got, err := os.ReadFile(filepath.Join(p, "Files", "special", "streams.txt"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("reading through the mount: %d bytes, %v", len(got), err)
	}
	if gp, err := GetCimMountPath(cimA, container); err != nil || gp != p {
		t.Errorf("GetCimMountPath = %s, %v", gp, err)
	}
	if _, err := GetCimMountPath(cimB, container); !errors.Is(err, ErrNotMounted) {
		t.Errorf("GetCimMountPath of another CIM: %v", err)
	}
	if again, err := MountCimLayer(ctx, cimA, container); err != nil || again != p {
		t.Errorf("mounting again: %s, %v", again, err)
	}
	var me *MountError
	if _, err := MountCimLayer(ctx, cimB, container); !errors.Is(err, ErrMountedOther) || !errors.Is(err, fs.ErrExist) || !errors.As(err, &me) || me.ContainerID != container {
		t.Errorf("mounting another CIM for the container: %v", err)
	}
	// Another container mounts the same CIM beside it.
	p2, err := MountCimLayer(ctx, cimA, container+"-2")
	if err != nil || p2 == p {
		t.Fatalf("second container: %s, %v", p2, err)
	}
	if err := UnmountCimLayer(ctx, cimB, container); !errors.Is(err, ErrNotMounted) {
		t.Errorf("unmounting the wrong CIM: %v", err)
	}
	rec, err := fusefs.Get(mountID(container))
	if err != nil {
		t.Fatal(err)
	}
	if err := UnmountCimLayer(ctx, cimA, container); err != nil {
		t.Fatal(err)
	}
	checkNoMount(t, container, rec.PID)
	if err := UnmountCimLayer(ctx, cimA, container); !errors.Is(err, ErrNotMounted) {
		t.Errorf("second unmount: %v", err)
	}
	rec2, _ := fusefs.Get(mountID(container + "-2"))
	if err := CleanupContainerMounts(container + "-2"); err != nil {
		t.Fatal(err)
	}
	checkNoMount(t, container+"-2", rec2.PID)
	if err := CleanupContainerMounts(container); err != nil {
		t.Errorf("cleanup without mounts: %v", err)
	}
	if _, err := MountCimLayer(ctx, filepath.Join(dir, "missing.cim"), container); err == nil || !errors.Is(err, fusefs.ErrHelper) {
		t.Errorf("mounting a missing CIM: %v", err)
	}
	checkNoMount(t, container, 0)
}

// TestCleanupAfterCrash kills a process holding a mount (and, in the second
// case, the helper serving it too) and checks that CleanupContainerMounts
// leaves no mount, helper, state record or mount point, and that the
// container can mount again.
func TestCleanupAfterCrash(t *testing.T) {
	needMounts(t)
	cimPath := sampleLayer(t, t.TempDir(), "a", 1)
	for _, killHelper := range []bool{false, true} {
		t.Run(fmt.Sprintf("killHelper=%v", killHelper), func(t *testing.T) {
			container := fmt.Sprintf("crash-%v", killHelper)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "CIM_TEST_CHILD=mount", "CIM_TEST_CIM="+cimPath, "CIM_TEST_CONTAINER="+container)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || strings.HasPrefix(line, "error:") {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child: %q, %v", line, err)
			}
			mp := strings.TrimSpace(line)
			rec, err := fusefs.Get(mountID(container))
			if err != nil {
				t.Fatal(err)
			}
			cmd.Process.Signal(unix.SIGKILL)
			cmd.Wait()
			if killHelper {
				if err := proctest.KillWait(rec.PID, proctest.Timeout); err != nil {
					t.Fatal(err)
				}
				var st unix.Stat_t
				if err := unix.Stat(mp, &st); !errors.Is(err, unix.ENOTCONN) {
					t.Logf("dead mount answers %v", err)
				}
			} else if _, err := os.ReadDir(filepath.Join(mp, "Files")); err != nil {
				t.Errorf("the mount did not outlive its caller: %v", err)
			}
			if err := CleanupContainerMounts(container); err != nil {
				t.Fatal(err)
			}
			checkNoMount(t, container, rec.PID)
			p, err := MountCimLayer(context.Background(), cimPath, container)
			if err != nil || p != mp {
				t.Fatalf("mounting again: %s, %v", p, err)
			}
			if err := CleanupContainerMounts(container); err != nil {
				t.Fatal(err)
			}
			checkNoMount(t, container, 0)
		})
	}
}
