package store_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"archive/tar"

	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/store"
)

// The test binary runs itself as the child of the crash and concurrency tests:
// crashChildEnv names what the child does, crashRootEnv the store.
const (
	crashChildEnv = "HOSTCOMPUTE_STORE_CRASH_CHILD"
	crashRootEnv  = "HOSTCOMPUTE_STORE_CRASH_ROOT"
)

// childTar is the Linux layer the import child imports: enough files that an
// import takes a few milliseconds, so kills land inside it.
func childTar() []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := range 300 {
		body := strings.Repeat(strconv.Itoa(i), 100)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%d/f%d", i%10, i), Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0), Typeflag: tar.TypeReg})
		io.WriteString(tw, body)
	}
	tw.WriteHeader(&tar.Header{Name: ".wh.gone", Mode: 0o644, Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)})
	tw.Close()
	return b.Bytes()
}

func windowsTar() []byte {
	var b bytes.Buffer
	if err := sampletar.Write(&b, sampletar.Options{Seed: 3, Files: 60, Bytes: 128 << 10}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// runCrashChild runs the child's loop when the environment asks for it, and
// never returns then.
func runCrashChild() bool {
	op := os.Getenv(crashChildEnv)
	if op == "" {
		return false
	}
	err := crashChild(op, os.Getenv(crashRootEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func crashChild(op, root string) error {
	ctx := context.Background()
	s, err := store.Open(ctx, root)
	if err != nil {
		return err
	}
	if op == "views" {
		return viewsChild(ctx, s)
	}
	linux, windows := childTar(), windowsTar()
	fmt.Println("ready")
	pid := os.Getpid()
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s-%d-%d", op, pid, i)
		switch op {
		case "prepare":
			_, err = s.Prepare(ctx, k, "base")
		case "commit":
			if _, err = s.Prepare(ctx, k+"-a", "base"); err == nil {
				err = s.Commit(ctx, k, k+"-a")
			}
		case "remove":
			if _, err = s.Prepare(ctx, k+"-a", "base"); err == nil {
				if err = s.Commit(ctx, k, k+"-a"); err == nil {
					err = s.Remove(ctx, k)
				}
			}
		case "import":
			switch i % 3 {
			case 0:
				_, err = s.Import(ctx, "imp-"+k, "base", bytes.NewReader(linux))
			case 1:
				_, err = s.Import(ctx, "eimp-"+k, "", bytes.NewReader(linux), store.WithFormat(store.FormatExt4VHD))
			default:
				_, err = s.Import(ctx, "wimp-"+k, "", bytes.NewReader(windows), store.WithFormat(store.FormatWindowsFolder))
			}
		case "export":
			for _, k := range []string{"base", "wbase", "ebase"} {
				if err == nil {
					err = s.Export(ctx, io.Discard, k)
				}
			}
		default:
			return fmt.Errorf("unknown op %q", op)
		}
		if err != nil {
			return err
		}
	}
}

// viewsChild makes views over the shared parents, mounts each, reads it,
// unmounts it and removes all its views.
func viewsChild(ctx context.Context, s *store.Store) error {
	pid := os.Getpid()
	dir, err := os.MkdirTemp("", "store-view-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var keys []string
	for i := range 8 {
		parent := fmt.Sprintf("p%d", i%4)
		k := fmt.Sprintf("v-%d-%d", pid, i)
		ms, err := s.View(ctx, k, parent)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		undo, err := store.MountAll(ctx, ms, dir)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(dir, "p0"))
		if rerr := undo.Release(ctx); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		if string(b) != "0" {
			return fmt.Errorf("view %s shows p0 = %q", k, b)
		}
	}
	for _, k := range keys {
		if err := s.Remove(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func childCmd(t *testing.T, op, root string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+op, crashRootEnv+"="+root)
	cmd.Stderr = os.Stderr
	return cmd
}

// descendants lists processes whose environment names the store root: what a
// child left running.
func descendants(root string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	want := []byte(crashRootEnv + "=" + root + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && bytes.Contains(env, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// assertNothingLeaked checks, after a reopen, that nothing is mounted under
// root, no loop device is backed by a file under it, no process of the child
// runs, and Check finds nothing.
func assertNothingLeaked(t *testing.T, root string) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mountinfo.Under(ms, root) {
		t.Errorf("left mounted: %s (%s)", m.Mountpoint, m.FSType)
	}
	if devs, err := loop.FindUnder(root); err != nil || len(devs) > 0 {
		t.Errorf("loop devices left: %v %v", devs, err)
	}
	if pids := descendants(root); len(pids) > 0 {
		t.Errorf("processes left: %v", pids)
	}
	c, err := store.Open(context.Background(), root, store.WithoutReconcile())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ps, err := c.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		t.Errorf("check: %+v", p)
	}
}

// TestCrash kills a child process (SIGKILL) at random points of Prepare,
// Commit, Remove, Import and Export, reopens the store after each kill and
// checks that nothing leaked and nothing is half visible.
func TestCrash(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	s := openStore(t, root)
	linux, windows := childTar(), windowsTar()
	base := makeTar(t, tarEntry{name: "gone", body: "x", typ: tar.TypeReg}, tarEntry{name: "d0/", typ: tar.TypeDir})
	if _, err := s.Import(ctx, "base", "", bytes.NewReader(base)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "wbase", "", bytes.NewReader(windows), store.WithFormat(store.FormatWindowsFolder)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "ebase", "", bytes.NewReader(linux), store.WithFormat(store.FormatExt4VHD)); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(h[:]) }
	linuxID, windowsID := sum(linux), sum(windows)

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	kills := 20
	if testing.Short() {
		kills = 11
	}
	leftovers, kinds := map[string]int{}, map[string]int{}
	defer func() {
		t.Logf("kills per op: %d; kills that left something to clean: %v (%v)", kills, leftovers, kinds)
	}()
	for _, op := range []string{"prepare", "commit", "remove", "import", "export"} {
		for n := range kills {
			cmd := childCmd(t, op, root)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%s: child did not start: %q %v", op, line, err)
			}
			delay := time.Duration(rng.Int64N(int64(25 * time.Millisecond)))
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
			err = cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("%s #%d: child ended before the kill: %v", op, n, err)
			}
			// What the kill left, before the reopen reconciles it.
			if c, err := store.Open(ctx, root, store.WithoutReconcile()); err == nil {
				if ps, err := c.Check(ctx); err == nil && len(ps) > 0 {
					leftovers[op]++
					for _, p := range ps {
						kinds[p.Kind]++
					}
				}
			}
			// Reopening reconciles; then nothing may be left.
			r, err := store.Open(ctx, root)
			if err != nil {
				t.Fatalf("%s #%d (killed after %v): reopen: %v", op, n, delay, err)
			}
			r.Close()
			assertNothingLeaked(t, root)
			if t.Failed() {
				t.Fatalf("%s #%d: killed after %v", op, n, delay)
			}
		}
	}
	// Every layer there is is whole: imports have their diff ID and all their
	// files; commits their content directory.
	err := s.Walk(ctx, func(ctx context.Context, i store.Info) error {
		switch {
		case strings.HasPrefix(i.Key, "imp-"):
			if i.DiffID != linuxID {
				t.Errorf("%s: diff ID %s, want %s", i.Key, i.DiffID, linuxID)
			}
			var buf bytes.Buffer
			if err := s.Export(ctx, &buf, i.Key); err != nil {
				return err
			}
			if n := strings.Count(strings.Join(tarNames(t, buf.Bytes()), "\n"), "/f"); n != 300 {
				t.Errorf("%s: %d files, want 300", i.Key, n)
			}
		case strings.HasPrefix(i.Key, "eimp-"):
			if i.DiffID != linuxID {
				t.Errorf("%s: diff ID %s, want %s", i.Key, i.DiffID, linuxID)
			}
			var buf bytes.Buffer
			if err := s.Export(ctx, &buf, i.Key); err != nil {
				return err
			}
			if n := strings.Count(strings.Join(tarNames(t, buf.Bytes()), "\n"), "/f"); n != 300 {
				t.Errorf("%s: %d files, want 300", i.Key, n)
			}
		case strings.HasPrefix(i.Key, "wimp-"):
			if i.DiffID != windowsID {
				t.Errorf("%s: diff ID %s, want %s", i.Key, i.DiffID, windowsID)
			}
			var buf bytes.Buffer
			if err := s.Export(ctx, &buf, i.Key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Everything can still be removed, leaving an empty store.
	var keys []string
	s.Walk(ctx, func(ctx context.Context, i store.Info) error { keys = append(keys, i.Key); return nil })
	for _, k := range keys {
		if k != "base" && k != "wbase" && k != "ebase" {
			if err := s.Remove(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"base", "wbase", "ebase"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	assertNothingLeaked(t, root)
	for _, d := range []string{"layers", "staging", "trash"} {
		if ents, _ := os.ReadDir(filepath.Join(root, d)); len(ents) != 0 {
			t.Errorf("%s/ holds %d entries in an empty store", d, len(ents))
		}
	}
}

// TestConcurrentViews runs 32 processes at once, each making views over shared
// parents, mounting, reading and unmounting them, and removing them.
func TestConcurrentViews(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	s := openStore(t, root)
	parent := ""
	for i := range 4 {
		k := fmt.Sprintf("p%d", i)
		body := strconv.Itoa(i)
		if _, err := s.Import(ctx, k, parent, bytes.NewReader(makeTar(t, tarEntry{name: "p" + body, body: body, typ: tar.TypeReg}))); err != nil {
			t.Fatal(err)
		}
		parent = k
	}
	const procs = 32
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := childCmd(t, "views", root)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, stderr.String())
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	var keys []string
	s.Walk(ctx, func(ctx context.Context, i store.Info) error { keys = append(keys, i.Key); return nil })
	if strings.Join(keys, " ") != "p0 p1 p2 p3" {
		t.Errorf("the store holds %q after the views were removed", keys)
	}
	assertNothingLeaked(t, root)
	if ents, _ := os.ReadDir(filepath.Join(root, "layers")); len(ents) != 4 {
		t.Errorf("layers/ holds %d directories, want the 4 parents'", len(ents))
	}
	_ = fs.ErrNotExist
}
