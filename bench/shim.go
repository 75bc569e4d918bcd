package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// containerdVersion is the containerd release whose daemon, ctr and
// containerd-shim-runc-v2 scripts/install-go-peers.sh builds into
// bin/peers/containerd/<version> and bin/peers/containerd-shim-runc-v2/<version>.
const containerdVersion = "v2.4.2"

// shimResident runs the busybox tree at rootfs as a container under containerd
// (a daemon of its own, state in a temporary folder, the runc v2 shim of
// containerdVersion), runs execs execs of /bin/true in it as the exec row does
// in ours, and returns the resident memory (VmRSS) and proportional set (Pss)
// of the container's containerd-shim-runc-v2: the shim's figure for the same
// container as our monitor's.
func shimResident(ctx context.Context, env *Env, rootfs string, execs int) (rss, pss int64, err error) {
	peers := filepath.Join(env.Root, "bin", "peers")
	daemon := filepath.Join(peers, "containerd", containerdVersion, "containerd")
	ctr := filepath.Join(peers, "containerd", containerdVersion, "ctr")
	shimDir := filepath.Join(peers, "containerd-shim-runc-v2", containerdVersion)
	for _, p := range []string{daemon, ctr, filepath.Join(shimDir, "containerd-shim-runc-v2")} {
		if _, err := os.Stat(p); err != nil {
			return 0, 0, fmt.Errorf("containerd %s not built (scripts/install-go-peers.sh): %w", containerdVersion, err)
		}
	}
	dir, err := os.MkdirTemp("/run", "hostcompute-bench-containerd-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		return 0, 0, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	d := exec.Command(daemon, "--config", filepath.Join(dir, "config.toml"))
	// The daemon finds the shim in its PATH.
	d.Env = append(os.Environ(), "PATH="+shimDir+":"+os.Getenv("PATH"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		d.Process.Kill()
		d.Wait()
	}()
	run := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, ctr, append([]string{"--address", sock}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	for i := 0; ; i++ {
		if _, err := run("version"); err == nil {
			break
		} else if i == 100 {
			return 0, 0, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	id := fmt.Sprintf("bench-shim-%d", os.Getpid())
	if _, err := run("run", "--rootfs", "--detach", "--runtime", "io.containerd.runc.v2", "--env", "PATH=/bin", rootfs, id, "/bin/sleep", "100000"); err != nil {
		return 0, 0, err
	}
	defer func() {
		run("task", "kill", "--signal", "KILL", id)
		for i := 0; i < 50; i++ {
			if _, err := run("task", "delete", id); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		run("container", "delete", id)
	}()
	for i := 0; i < execs; i++ {
		if _, err := run("task", "exec", "--exec-id", fmt.Sprintf("e%d", i), id, "/bin/true"); err != nil {
			return 0, 0, err
		}
	}
	// The shim is the parent of the container's init.
	tasks, err := run("task", "list")
	if err != nil {
		return 0, 0, err
	}
	var initPid int
	for _, line := range strings.Split(tasks, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			initPid, _ = strconv.Atoi(f[1])
		}
	}
	if initPid == 0 {
		return 0, 0, fmt.Errorf("ctr task list: no pid for %s: %s", id, tasks)
	}
	ppid, err := statusField(initPid, "PPid:")
	if err != nil {
		return 0, 0, err
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if filepath.Base(exe) != "containerd-shim-runc-v2" {
		return 0, 0, fmt.Errorf("the parent of the container's init is %s, not the shim", exe)
	}
	return processMemory(ppid)
}

// processMemory returns the VmRSS and Pss of process pid, in bytes.
func processMemory(pid int) (rss, pss int64, err error) {
	kb, err := statusField(pid, "VmRSS:")
	if err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			p, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return int64(kb) << 10, p << 10, nil
		}
	}
	return int64(kb) << 10, 0, nil
}

// statusField reads the number after name in /proc/pid/status.
func statusField(pid int, name string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, name)
}
