package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExitCodesAndStdio(t *testing.T) {
	t.Parallel()
	c := newContainer(t, nil)
	out, errOut, e := run(t, c, true, "hello\n", "sh", "-c", "read x; echo out:$x; echo err >&2; exit 7")
	if out != "out:hello\n" || errOut != "err\n" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	if e.Code != 7 {
		t.Errorf("exit code %d, want 7", e.Code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ce, err := c.Wait(ctx)
	if err != nil || ce == nil || ce.Code != 7 {
		t.Fatalf("container wait: %v %+v", err, ce)
	}
	if _, err := c.Exec(ctx, &ProcessSpec{Args: []string{"true"}}); !errors.Is(err, ErrStopped) {
		t.Errorf("exec after stop: %v, want ErrStopped", err)
	}
}

func TestTerminalSize(t *testing.T) {
	t.Parallel()
	c := newContainer(t, nil)
	ctx := context.Background()
	p, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh"}, Terminal: true, ConsoleWidth: 80, ConsoleHeight: 25})
	if err != nil {
		t.Fatal(err)
	}
	if p.Console == nil {
		t.Fatal("no console")
	}
	defer p.Console.Close()
	if err := p.Resize(ctx, 132, 43); err != nil {
		t.Fatal(err)
	}
	// Another handle resizes through the monitor.
	q, err := c.OpenProcess(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Resize(ctx, 101, 37); err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.Console, "stty size; exit 5\n")
	var out bytes.Buffer
	io.Copy(&out, p.Console) // EIO once the terminal's last process exits
	if !strings.Contains(out.String(), "37 101") {
		t.Errorf("stty size printed %q, want 37 101", out.String())
	}
	e, err := p.Wait(ctx)
	if err != nil || e.Code != 5 {
		t.Errorf("exit %+v %v", e, err)
	}
}

func TestStdinCloseAndExec(t *testing.T) {
	t.Parallel()
	c := newContainer(t, nil)
	ctx := context.Background()
	if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sleep", "100"}}); err != nil {
		t.Fatal(err)
	}
	// cat ends when its stdin is closed.
	out, _, e := run(t, c, false, "round trip\n", "cat")
	if out != "round trip\n" || e.Code != 0 {
		t.Errorf("cat: %q %+v", out, e)
	}
	// A second process opened and waited for from another process.
	p, err := c.Exec(ctx, &ProcessSpec{Args: []string{"sh", "-c", "sleep 0.5; exit 9"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := helper(t, helperRequest{Action: "open-process", ID: c.ID(), Pid: p.Pid()}, "")
	if err != nil || !strings.Contains(got, "exit 9") {
		t.Errorf("other process: %q %v", got, err)
	}
	if err := c.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newContainer(t, func(cfg *Config) { cfg.Mounts = []Mount{{Source: dir, Destination: "/out"}} })
	ctx := context.Background()
	if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /out/n.tmp; mv /out/n.tmp /out/n; sleep 0.02; done"}}); err != nil {
		t.Fatal(err)
	}
	read := func() string { b, _ := os.ReadFile(filepath.Join(dir, "n")); return strings.TrimSpace(string(b)) }
	time.Sleep(300 * time.Millisecond)
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info(ctx); info.Status != StatusPaused {
		t.Errorf("status %s, want paused", info.Status)
	}
	a := read()
	time.Sleep(300 * time.Millisecond)
	if b := read(); a != b || a == "" {
		t.Errorf("counter moved while paused: %q → %q", a, b)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if b := read(); b == a {
		t.Errorf("counter stuck after resume at %q", b)
	}
}

func TestShutdownIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	c := newContainer(t, nil)
	ctx := context.Background()
	// sh as PID 1 has no SIGTERM handler, so the kernel drops SIGTERM.
	if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh", "-c", "while true; do sleep 1; done"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Shutdown(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	e, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second || d < time.Second {
		t.Errorf("shutdown took %v, want about the 1 s timeout", d)
	}
	if e.Signal != 9 {
		t.Errorf("init ended with %+v, want SIGKILL", e)
	}
}

func TestMappedDirectoryReadOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("host\n"), 0o644)
	c := newContainer(t, func(cfg *Config) { cfg.Mounts = []Mount{{Source: dir, Destination: "/ro", ReadOnly: true}} })
	out, errOut, e := run(t, c, true, "", "sh", "-c", "cat /ro/f; echo x > /ro/g")
	if out != "host\n" || e.Code == 0 || !strings.Contains(errOut, "Read-only") {
		t.Errorf("out %q err %q exit %+v", out, errOut, e)
	}
	if exists(filepath.Join(dir, "g")) {
		t.Error("the container wrote into a read-only mapped directory")
	}
}

func TestConcurrentContainers(t *testing.T) {
	needRoot(t)
	setState(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ids := make([]string, n)
	base := busyboxLayer(t)
	for i := 0; i < n; i++ {
		ids[i] = uniqueID(t)
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			ctx := context.Background()
			c, err := Create(ctx, Config{ID: id, Scratch: filepath.Join(t.TempDir(), "s"), Layers: []Layer{{Path: base}}})
			if err != nil {
				errs <- err
				return
			}
			defer func() {
				if err := c.Delete(ctx, true); err != nil {
					errs <- err
				}
			}()
			p, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh", "-c", "echo " + id + " > /tmp/id; cat /tmp/id > /dev/null"}})
			if err != nil {
				errs <- err
				return
			}
			e, err := p.Wait(ctx)
			if err != nil || e.Code != 0 {
				errs <- fmt.Errorf("%s: exit %+v %v", id, e, err)
			}
		}(ids[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		assertGone(t, id)
	}
}

func TestExt4LayersAndScratchDisk(t *testing.T) {
	t.Parallel()
	var scratch string
	c := newContainer(t, func(cfg *Config) {
		cfg.Layers = []Layer{{ID: "base", Path: ext4Layer(t)}}
		cfg.ScratchSize = 64 << 20
		scratch = cfg.Scratch
	})
	out, _, e := run(t, c, true, "", "sh", "-c", "echo hi > /written; cat /written; df -k / | tail -1")
	if !strings.HasPrefix(out, "hi\n") || e.Code != 0 {
		t.Fatalf("out %q exit %+v", out, e)
	}
	if _, err := os.Stat(filepath.Join(scratch, ScratchDisk)); err != nil {
		t.Errorf("no scratch disk: %v", err)
	}
	if err := c.Delete(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if l := loopsOf(filepath.Dir(filepath.Dir(scratch))); len(l) > 0 {
		t.Errorf("loop devices left: %v", l)
	}
}
