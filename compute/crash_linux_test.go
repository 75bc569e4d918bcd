package compute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperRequest is what a test asks of the test binary re-executed as a caller
// in another process.
type helperRequest struct {
	Action string // "create-start-exec", "open-process", "inprocess-run", "inprocess-serve"
	Config Config
	ID     string
	Pid    int
	// Stop after: "create", "start", "exec" (for create-start-exec).
	Upto string
}

const envHelperRequest = "HOSTCOMPUTE_COMPUTE_TEST_HELPER"

// TestHelperProcess is the other process of the tests; it does nothing in a
// normal run.
func TestHelperProcess(t *testing.T) {
	data, ok := os.LookupEnv(envHelperRequest)
	if !ok {
		t.Skip("helper process only")
	}
	var req helperRequest
	if err := json.Unmarshal([]byte(data), &req); err != nil {
		fmt.Println("bad request:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	switch req.Action {
	case "inprocess-run", "inprocess-serve":
		inProcessHelper(req)
	case "create-start-exec":
		c, err := Create(ctx, req.Config)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if req.Upto != "create" {
			if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sleep", "100"}}); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
		}
		if req.Upto == "stop" {
			c.Kill(ctx)
			c.Wait(ctx)
		}
		if req.Upto == "exec" {
			p, err := c.Exec(ctx, &ProcessSpec{Args: []string{"sleep", "100"}})
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			fmt.Println(p.Pid())
		}
	case "open-process":
		c, err := Open(ctx, req.ID)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		p, err := c.OpenProcess(req.Pid)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		e, err := p.Wait(ctx)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("exit", e.Code)
	}
	os.Exit(0)
}

// helper runs req in another process, with the crash hook at step.
func helper(t *testing.T, req helperRequest, step string) (string, error) {
	t.Helper()
	out, err := helperCommand(req, step).CombinedOutput()
	return string(out), err
}

// helperCommand is the command of the helper process doing req.
func helperCommand(req helperRequest, step string) *exec.Cmd {
	data, _ := json.Marshal(req)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelperRequest+"="+string(data), "HOSTCOMPUTE_COMPUTE_CRASH="+step)
	return cmd
}

func baseConfig(t *testing.T) Config {
	return Config{ID: uniqueID(t), Scratch: filepath.Join(t.TempDir(), "scratch"), Layers: []Layer{{ID: "base", Path: busyboxLayer(t)}}}
}

// TestCrashCleanup kills the caller, or the monitor, at every step of create,
// start and exec; the next Open must leave nothing behind.
func TestCrashCleanup(t *testing.T) {
	needRoot(t)
	setState(t)
	steps := []struct {
		step, upto string
		ext4       bool
	}{
		{"create-after-mount", "create", true},
		{"monitor-before-delete", "stop", true}, // the monitor dies as the container stops
		{"", "exec", true},
		{"create-after-record", "create", false},
		{"create-after-mount", "create", false},
		{"create-after-monitor", "create", false},
		{"monitor-ready", "create", false},
		{"call-start-sent", "start", false},
		{"monitor-before-run", "start", false},
		{"monitor-after-run", "start", false},
		{"monitor-after-record", "start", false},
		{"call-exec-sent", "exec", false},
		{"", "exec", false}, // then the monitor is killed below
	}
	for _, s := range steps {
		name := s.step
		if name == "" {
			name = "monitor-killed-while-running"
		}
		if s.ext4 {
			name += "-ext4"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(t)
			if s.ext4 {
				cfg.Layers = []Layer{{ID: "base", Path: ext4Layer(t)}}
			}
			out, err := helper(t, helperRequest{Action: "create-start-exec", Config: cfg, Upto: s.upto}, s.step)
			var initPid int
			if s.step == "" {
				if err != nil {
					t.Fatalf("helper: %v\n%s", err, out)
				}
				// Kill the monitor of the running container.
				pid, err := readPid(filepath.Join(containerDir(cfg.ID), monitorPid))
				if err != nil {
					t.Fatal(err)
				}
				c, err := Open(context.Background(), cfg.ID)
				if err != nil {
					t.Fatal(err)
				}
				info, err := c.Info(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				initPid = info.InitPid
				unix.Kill(pid, unix.SIGKILL)
				for i := 0; i < 200 && monitorAlive(containerDir(cfg.ID)); i++ {
					time.Sleep(10 * time.Millisecond)
				}
			} else {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Logf("helper ended with %v:\n%s", err, out)
				} else if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					t.Logf("helper killed at %s", s.step)
				}
			}
			ctx := context.Background()
			c, err := Open(ctx, cfg.ID)
			switch {
			case err == nil:
				// The container survived its caller: it is whole, and removable.
				if err := c.Delete(ctx, true); err != nil {
					t.Fatal(err)
				}
			case errors.Is(err, ErrNotFound):
			default:
				t.Fatalf("open: %v", err)
			}
			assertGone(t, cfg.ID)
			if l := loopsOf(filepath.Dir(filepath.Dir(cfg.Scratch))); len(l) > 0 {
				t.Errorf("loop devices left: %v", l)
			}
			if initPid > 0 {
				// It may linger a moment as a zombie of the host's init.
				for i := 0; i < 100; i++ {
					b, _ := os.ReadFile("/proc/" + strconv.Itoa(initPid) + "/stat")
					if len(b) == 0 || bytes.Contains(b, []byte(") Z ")) {
						break
					}
					if i == 99 {
						t.Errorf("init %d still runs: %s", initPid, b)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}
