package compute

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inProcessHelper is the helper process's side of the InProcessMonitor tests:
// it creates req.Config's container with its monitor in this process.
//
// "inprocess-run": runs a process with pipes, and meanwhile a command of its
// own (which the monitor must not reap), then removes the container; it
// prints what it saw. "inprocess-serve": starts `sleep 100` as init, prints
// "ready", and waits for the container to stop (another process stops it),
// then removes it and prints "removed"; killed instead, it leaves its
// container without a monitor.
func inProcessHelper(req helperRequest) {
	ctx := context.Background()
	c, err := Create(ctx, req.Config, InProcessMonitor())
	if err != nil {
		fmt.Println("create:", err)
		os.Exit(1)
	}
	switch req.Action {
	case "inprocess-run":
		outR, outW, _ := os.Pipe()
		p, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh", "-c", "sleep 0.3; echo out; exit 3"}, Stdout: outW})
		outW.Close()
		if err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		// A child of this process that is none of the monitor's, exiting
		// before it is waited for: a reaper of every child would take it.
		own := exec.Command("sh", "-c", "exit 7")
		ownErr := own.Start()
		if ownErr == nil {
			time.Sleep(200 * time.Millisecond)
			ownErr = own.Wait()
		}
		out, _ := io.ReadAll(outR)
		e, err := p.Wait(ctx)
		if err != nil {
			fmt.Println("wait:", err)
			os.Exit(1)
		}
		fmt.Printf("own exit %d (%v)\n", own.ProcessState.ExitCode(), ownErr)
		fmt.Printf("out %q code %d\n", out, e.Code)
	case "inprocess-serve":
		if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sleep", "100"}}); err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		if _, err := c.Wait(ctx); err != nil {
			fmt.Println("wait:", err)
			os.Exit(1)
		}
	}
	if err := c.Delete(ctx, true); err != nil {
		fmt.Println("delete:", err)
		os.Exit(1)
	}
	fmt.Println("removed")
}

// serveInProcess starts a helper process whose container, with its monitor in
// that process, runs `sleep 100` as init, and opens the container here.
func serveInProcess(t *testing.T) (Config, *exec.Cmd, *bufio.Reader, *Container) {
	t.Helper()
	needRoot(t)
	setState(t)
	cfg := baseConfig(t)
	cmd := helperCommand(helperRequest{Action: "inprocess-serve", Config: cfg}, "")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	c, err := Open(context.Background(), cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cmd, out, c
}

func TestInProcessMonitorRun(t *testing.T) {
	needRoot(t)
	setState(t)
	cfg := baseConfig(t)
	out, err := helper(t, helperRequest{Action: "inprocess-run", Config: cfg}, "")
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	for _, want := range []string{"own exit 7 (exit status 7)", `out "out\n" code 3`, "removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
	assertGone(t, cfg.ID)
}

// TestInProcessMonitorServesOthers: a container whose monitor runs in its
// creator's process is driven from another process as any other.
func TestInProcessMonitorServesOthers(t *testing.T) {
	cfg, cmd, out, c := serveInProcess(t)
	ctx := context.Background()
	stdout, _, e := run(t, c, false, "", "sh", "-c", "echo exec; exit 4")
	if stdout != "exec\n" || e.Code != 4 {
		t.Errorf("exec: %q, exit %d", stdout, e.Code)
	}
	pid, _ := readPid(filepath.Join(containerDir(cfg.ID), monitorPid))
	if pid != cmd.Process.Pid {
		t.Errorf("monitor.pid %d, want the creator's %d", pid, cmd.Process.Pid)
	}
	if err := c.Shutdown(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil || !strings.Contains(string(rest), "removed") {
		t.Fatalf("helper: %v: %s", err, rest)
	}
	assertGone(t, cfg.ID)
}

// TestInProcessMonitorCreatorKilled: a creator killed while its container runs
// leaves a container without a monitor, which the next Open cleans up.
func TestInProcessMonitorCreatorKilled(t *testing.T) {
	cfg, cmd, _, c := serveInProcess(t)
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.InitPid == 0 {
		t.Fatalf("info: %+v %v", info, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := Open(ctx, cfg.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open after the creator died: %v, want ErrNotFound", err)
	}
	assertGone(t, cfg.ID)
	for i := 0; ; i++ {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(info.InitPid) + "/stat")
		if len(b) == 0 || strings.Contains(string(b), ") Z ") {
			break
		}
		if i == 100 {
			t.Fatalf("init %d still runs: %s", info.InitPid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := unix.Kill(info.InitPid, 0); err == nil {
		t.Logf("init %d left as a zombie of the host's init", info.InitPid)
	}
}
