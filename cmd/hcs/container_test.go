package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// busyboxDir makes a directory layer with busybox and its links.
func busyboxDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "bb")
	bin := filepath.Join(d, "bin")
	os.MkdirAll(bin, 0o755)
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755)
	out, _ := exec.Command("/bin/busybox", "--list").Output()
	for _, n := range strings.Fields(string(out)) {
		if n != "busybox" {
			os.Symlink("busybox", filepath.Join(bin, n))
		}
	}
	return d
}

// TestContainerCommands drives every container verb through the built binary
// (whose re-executed copies are the monitors) and checks the JSON vocabulary.
func TestContainerCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	bin := hcsBinary(t)
	state := t.TempDir()
	layer := busyboxDir(t)
	scratch := filepath.Join(t.TempDir(), "scratch")
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HOSTCOMPUTE_COMPUTE_STATE_DIR="+state)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	mustJSON := func(verb string, args ...string) any {
		t.Helper()
		out, errOut, code := run("", append([]string{"-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", verb, code, errOut)
		}
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s: %v: %q", verb, err, out)
		}
		checkJSON(t, verb, v, "")
		return v
	}
	// run: streams apart, stdin, exit status propagated.
	out, errOut, code := run("from stdin\n", "run", "-i", "-l", layer, "--", "sh", "-c", "cat; echo to-err >&2; exit 3")
	if out != "from stdin\n" || errOut != "to-err\n" || code != 3 {
		t.Errorf("run: out %q err %q code %d", out, errOut, code)
	}
	mustJSON("container create", "container", "create", "-l", layer, "--scratch", scratch, "--memory", "64M", "c1")
	if _, _, code := run("", "container", "create", "-l", layer, "--scratch", scratch, "c1"); code != exitExists {
		t.Errorf("second create: exit %d, want %d", code, exitExists)
	}
	mustJSON("container start", "container", "start", "c1", "--", "sleep", "100")
	out, _, code = run("", "container", "exec", "c1", "--", "sh", "-c", "echo exec; exit 4")
	if out != "exec\n" || code != 4 {
		t.Errorf("exec: %q %d", out, code)
	}
	mustJSON("container ps", "container", "ps", "c1")
	mustJSON("container stats", "container", "stats", "c1")
	mustJSON("container pause", "container", "pause", "c1")
	mustJSON("container resume", "container", "resume", "c1")
	mustJSON("container ls", "container", "ls")
	mustJSON("container kill", "container", "kill", "--signal", "TERM", "c1")
	v := mustJSON("container stop", "container", "stop", "--timeout", "1s", "c1")
	if m, _ := v.(map[string]any); m["status"] != "stopped" {
		t.Errorf("stop: %v", v)
	}
	mustJSON("container inspect", "container", "inspect", "c1")
	mustJSON("container rm", "container", "rm", "c1")
	if _, _, code := run("", "container", "inspect", "c1"); code != exitNotFound {
		t.Errorf("inspect after rm: exit %d, want %d", code, exitNotFound)
	}
	ents, _ := os.ReadDir(state)
	for _, e := range ents {
		if e.Name() != "runc" {
			t.Errorf("state left: %s", e.Name())
		}
	}
}

// TestRunSignals: hcs run forwards a signal to the container's init, and a
// second one kills the container, which is removed; nothing is left either way.
func TestRunSignals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	bin := hcsBinary(t)
	layer := busyboxDir(t)
	for _, tc := range []struct {
		name    string
		script  string
		signals int
		code    int
		out     string
	}{
		// sh as PID 1 takes SIGINT through its trap.
		{"forwarded", `trap "echo got; exit 5" INT; echo ready; while true; do sleep 0.05; done`, 1, 5, "ready\ngot\n"},
		// A PID 1 without a handler ignores it: the second signal kills.
		{"second kills", `echo ready; exec sleep 100`, 2, exitInterrupted, "ready\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			cmd := exec.Command(bin, "run", "-l", layer, "--", "sh", "-c", tc.script)
			cmd.Env = append(os.Environ(), "HOSTCOMPUTE_COMPUTE_STATE_DIR="+state)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(stdout)
			line, _ := r.ReadString('\n')
			if line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("first line %q; stderr %s", line, errb.String())
			}
			for i := 0; i < tc.signals; i++ {
				cmd.Process.Signal(syscall.SIGINT)
				time.Sleep(300 * time.Millisecond)
			}
			rest, _ := io.ReadAll(r)
			err = cmd.Wait()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if got := line + string(rest); got != tc.out || code != tc.code {
				t.Errorf("output %q exit %d, want %q exit %d; stderr %s", got, code, tc.out, tc.code, errb.String())
			}
			ents, _ := os.ReadDir(state)
			for _, e := range ents {
				if e.Name() != "runc" {
					t.Errorf("state left: %s", e.Name())
				}
			}
			if runc, _ := os.ReadDir(filepath.Join(state, "runc")); len(runc) > 0 {
				t.Errorf("runc state left: %v", runc)
			}
		})
	}
}
