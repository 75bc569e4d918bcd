package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/proctest"
)

// Test kinds: "testfile" serves the content of Source as the file "data";
// "testfail" fails to open.
func init() {
	Register("testfile", func(req Request) (*FS, error) {
		data, err := os.ReadFile(req.Source)
		if err != nil {
			return nil, err
		}
		root := &gofs.Inode{}
		return &FS{
			Root: root,
			Options: func(o *gofs.Options) {
				o.OnAdd = func(ctx context.Context) {
					f := &gofs.MemRegularFile{Data: data, Attr: fuseAttr(0o444)}
					root.AddChild("data", root.NewPersistentInode(ctx, f, gofs.StableAttr{}), false)
				}
			},
		}, nil
	})
	Register("testfail", func(req Request) (*FS, error) {
		return nil, errors.New("the test kind refuses " + req.Source)
	})
}

func TestMain(m *testing.M) {
	MaybeRunHelper()
	if os.Getenv("FUSEFS_TEST_CHILD") == "mount" {
		childMount()
		return
	}
	os.Exit(m.Run())
}

// childMount mounts the file named by FUSEFS_TEST_SOURCE, prints the ID and
// waits to be killed.
func childMount() {
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: os.Getenv("FUSEFS_TEST_SOURCE")})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(rec.ID)
	time.Sleep(time.Hour)
}

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE mounts with allow_other")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
}

func source(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkGone fails the test if id left a mount, a state directory or a
// helper process behind.
func checkGone(t *testing.T, rec *Record) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Source == sourcePrefix+rec.ID || m.Mountpoint == rec.Mountpoint {
			t.Errorf("mount left behind: %+v", m)
		}
	}
	if _, err := os.Stat(filepath.Join(StateDir(), rec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left behind: %v", err)
	}
	if alive(rec.PID) {
		t.Errorf("helper %d still running", rec.PID)
	}
}

func alive(pid int) bool { return processRunning(pid) }

func TestMountListUnmount(t *testing.T) {
	needFUSE(t)
	want := bytes.Repeat([]byte("hostcompute "), 100000)
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, want), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.PID == os.Getpid() || !alive(rec.PID) {
		t.Fatalf("helper pid %d not a live separate process", rec.PID)
	}
	// The helper runs in its own session.
	if sid, err := unix.Getsid(rec.PID); err != nil || sid != rec.PID {
		t.Errorf("helper session %d (%v), want %d", sid, err, rec.PID)
	}
	got, err := os.ReadFile(filepath.Join(rec.Mountpoint, "data"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("reading through the mount: %d bytes, %v", len(got), err)
	}
	ms, _ := mountinfo.Read()
	var m *mountinfo.Mount
	for i := range ms {
		if ms[i].Mountpoint == rec.Mountpoint {
			m = &ms[i]
		}
	}
	if m == nil || m.FSType != fsType || m.Source != sourcePrefix+rec.ID || !strings.HasPrefix(m.Options, "ro") {
		t.Errorf("mountinfo entry %+v", m)
	}
	list, err := List()
	if err != nil || len(list) != 1 || list[0].ID != rec.ID || list[0].Kind != "testfile" {
		t.Errorf("List = %+v, %v", list, err)
	}
	if got, err := Get(rec.ID); err != nil || got.PID != rec.PID {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if err := Unmount(context.Background(), rec.ID); err != nil {
		t.Fatal(err)
	}
	checkGone(t, rec)
	if err := Unmount(context.Background(), rec.ID); !errors.Is(err, ErrNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second Unmount: %v, want ErrNotFound", err)
	}
}

func TestConcurrentReaders(t *testing.T) {
	needFUSE(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7 / 4096)
	}
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, want)})
	if err != nil {
		t.Fatal(err)
	}
	defer Unmount(context.Background(), rec.ID)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(filepath.Join(rec.Mountpoint, "data"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			buf := make([]byte, 64<<10)
			for off := int64(g * 4096); off < int64(len(want)); off += int64(len(buf)) * 3 {
				n, err := f.ReadAt(buf, off)
				if err != nil && n == 0 {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
					errs <- fmt.Errorf("reader %d: wrong data at %d", g, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestMountErrors(t *testing.T) {
	needFUSE(t)
	ctx := context.Background()
	_, err := Mount(ctx, Request{Kind: "nosuchkind"})
	if !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	_, err = Mount(ctx, Request{Kind: "testfail", Source: "/some/disk", ID: "failing"})
	if !errors.Is(err, ErrHelper) || !strings.Contains(err.Error(), "the test kind refuses /some/disk") {
		t.Errorf("failing kind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(StateDir(), "failing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state left after a failed mount: %v", err)
	}
	_, err = Mount(ctx, Request{Kind: "testfile", Source: "/nonexistent/file"})
	if !errors.Is(err, ErrHelper) || !strings.Contains(err.Error(), "/nonexistent/file") {
		t.Errorf("missing source: %v", err)
	}
	_, err = Mount(ctx, Request{Kind: "testfile", Source: source(t, []byte("x")), Mountpoint: "/nonexistent/dir"})
	if !errors.Is(err, ErrHelper) {
		t.Errorf("missing mount point: %v", err)
	}
	if _, err := Mount(ctx, Request{Kind: "testfile", ID: "../x"}); !errors.Is(err, ErrInvalidID) {
		t.Errorf("bad ID: %v", err)
	}
	entries, _ := os.ReadDir(StateDir())
	if len(entries) != 0 {
		t.Errorf("state directory not empty after failed mounts: %v", entries)
	}
	rec, err := Mount(ctx, Request{Kind: "testfile", Source: source(t, []byte("x")), ID: "dup"})
	if err != nil {
		t.Fatal(err)
	}
	defer Unmount(ctx, rec.ID)
	if _, err := Mount(ctx, Request{Kind: "testfile", Source: source(t, []byte("x")), ID: "dup"}); !errors.Is(err, os.ErrExist) {
		t.Errorf("duplicate ID: %v", err)
	}
}

func TestUnmountBusy(t *testing.T) {
	needFUSE(t)
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, []byte("busy"))})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(rec.Mountpoint, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Unmount(context.Background(), rec.ID); !errors.Is(err, ErrBusy) {
		t.Errorf("Unmount with an open file: %v, want ErrBusy", err)
	}
	f.Close()
	if err := Unmount(context.Background(), rec.ID); err != nil {
		t.Fatal(err)
	}
	checkGone(t, rec)
}

// TestProbeStoppedServer: a server that does not answer (stopped) is neither
// dead nor gone, and the probe does not wait for it longer than probeTimeout.
func TestProbeStoppedServer(t *testing.T) {
	needFUSE(t)
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, []byte("stopped"))})
	if err != nil {
		t.Fatal(err)
	}
	defer Unmount(context.Background(), rec.ID)
	defer func(d time.Duration) { probeTimeout = d }(probeTimeout)
	probeTimeout = 200 * time.Millisecond
	if err := unix.Kill(rec.PID, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	dead, serving := Dead(rec.Mountpoint), Serving(rec.Mountpoint)
	took := time.Since(start)
	if err := unix.Kill(rec.PID, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if dead || !serving {
		t.Errorf("a stopped server: Dead %v, Serving %v; want false, true", dead, serving)
	}
	if took > 30*time.Second {
		t.Errorf("probing a stopped server took %v", took)
	}
}

// TestUnmountBusyForAMoment: a mount that is busy only for a moment (another
// process looking at it, as every Cleanup does) is unmounted once it is free.
func TestUnmountBusyForAMoment(t *testing.T) {
	needFUSE(t)
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, []byte("moment"))})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(rec.Mountpoint, "data"))
	if err != nil {
		t.Fatal(err)
	}
	retries := 0
	testHookBusy = func() {
		if retries++; retries == 1 {
			f.Close()
		}
	}
	defer func() { testHookBusy = nil }()
	if err := Unmount(context.Background(), rec.ID); err != nil {
		t.Fatal(err)
	}
	if retries == 0 {
		t.Error("the mount was never busy")
	}
	checkGone(t, rec)
}

// inOwnMountNamespace runs t again in a child test process with a mount
// namespace of its own, and reports true in the parent, which should then
// return. A dead mount is fair game for every Cleanup, in any process and
// with any state directory; other test binaries running at the same time
// would take this test's dead mounts before its own Cleanup saw them.
func inOwnMountNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv("FUSEFS_TEST_OWN_NS") == t.Name() {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FUSEFS_TEST_OWN_NS="+t.Name())
	// Go makes the new namespace's mounts private, so nothing propagates
	// in or out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in its own mount namespace: %v\n%s", t.Name(), err, out)
	}
	t.Logf("in its own mount namespace:\n%s", out)
	return true
}

func TestCleanupKilledHelper(t *testing.T) {
	needFUSE(t)
	if inOwnMountNamespace(t) {
		return
	}
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, []byte("k"))})
	if err != nil {
		t.Fatal(err)
	}
	// The kernel caches the root's attributes now, so a stat of the dead
	// mount will not ask the (dead) server.
	var st unix.Stat_t
	if err := unix.Stat(rec.Mountpoint, &st); err != nil || !Serving(rec.Mountpoint) || Dead(rec.Mountpoint) {
		t.Fatalf("live mount: stat %v, serving %v, dead %v", err, Serving(rec.Mountpoint), Dead(rec.Mountpoint))
	}
	// Cleanup takes the directory only once the helper's lock is free, that
	// is once every thread of the helper has exited.
	if err := proctest.KillWait(rec.PID, proctest.Timeout); err != nil {
		t.Fatal(err)
	}
	if !Dead(rec.Mountpoint) || Serving(rec.Mountpoint) {
		t.Errorf("a dead mount: Dead %v, Serving %v", Dead(rec.Mountpoint), Serving(rec.Mountpoint))
	}
	if list, _ := List(); len(list) != 0 {
		t.Errorf("List shows a dead helper: %+v", list)
	}
	cleaned, err := Cleanup(context.Background())
	if err != nil || !slices.Contains(cleaned, rec.ID) {
		t.Errorf("Cleanup = %v, %v", cleaned, err)
	}
	checkGone(t, rec)
}

func TestCleanupLeavesLiveMounts(t *testing.T) {
	needFUSE(t)
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, []byte("live"))})
	if err != nil {
		t.Fatal(err)
	}
	defer Unmount(context.Background(), rec.ID)
	// A directory left by a caller that died before starting a helper.
	junk := filepath.Join(StateDir(), "junk")
	if err := os.MkdirAll(junk, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(junk, lockFile), nil, 0o600)
	old := time.Now().Add(-time.Minute)
	os.Chtimes(junk, old, old)
	cleaned, err := Cleanup(context.Background())
	// Other test binaries running at the same time may leave dead mounts
	// that Cleanup also takes, so only "junk" is asked for.
	if err != nil || !slices.Contains(cleaned, "junk") || slices.Contains(cleaned, rec.ID) {
		t.Errorf("Cleanup = %v, %v; want [junk]", cleaned, err)
	}
	if b, err := os.ReadFile(filepath.Join(rec.Mountpoint, "data")); err != nil || string(b) != "live" {
		t.Errorf("live mount after Cleanup: %q, %v", b, err)
	}
}

// TestCallerKilled: the helper outlives a caller killed with SIGKILL, and
// stays listed and unmountable.
func TestCallerKilled(t *testing.T) {
	needFUSE(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FUSEFS_TEST_CHILD=mount", "FUSEFS_TEST_SOURCE="+source(t, []byte("orphan")))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 128)
	n, _ := out.Read(line)
	id := strings.TrimSpace(string(line[:n]))
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	rec, err := Get(id)
	if err != nil {
		t.Fatalf("child said %q: %v", id, err)
	}
	if b, err := os.ReadFile(filepath.Join(rec.Mountpoint, "data")); err != nil || string(b) != "orphan" {
		t.Errorf("reading after the caller died: %q, %v", b, err)
	}
	if cleaned, _ := Cleanup(context.Background()); slices.Contains(cleaned, id) {
		t.Errorf("Cleanup removed a live mount: %v", cleaned)
	}
	if err := Unmount(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	checkGone(t, rec)
}

// TestCleanupOrphanMount: a dead mount whose state directory is gone is
// still found through mountinfo and lazily unmounted.
func TestCleanupOrphanMount(t *testing.T) {
	needFUSE(t)
	if inOwnMountNamespace(t) {
		return
	}
	mp := t.TempDir()
	rec, err := Mount(context.Background(), Request{Kind: "testfile", Source: source(t, []byte("o")), Mountpoint: mp})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(rec.Mountpoint, &st) // cache the root's attributes
	if err := proctest.KillWait(rec.PID, proctest.Timeout); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(StateDir(), rec.ID)); err != nil {
		t.Fatal(err)
	}
	cleaned, err := Cleanup(context.Background())
	if err != nil || !slices.Contains(cleaned, rec.ID) {
		t.Errorf("Cleanup = %v, %v", cleaned, err)
	}
	checkGone(t, rec)
}
