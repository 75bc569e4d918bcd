//go:build linux

package cimfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCleanStale: the staging folder of a live writer stays; those of a dead
// one and of a killed one not yet reaped (a zombie) go.
func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, fmt.Sprintf("%s%d-1", stagingPrefix, os.Getpid()))
	zombieCmd := exec.Command("sleep", "60")
	if err := zombieCmd.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	defer zombieCmd.Wait()
	zombieCmd.Process.Signal(syscall.SIGKILL)
	// Wait until the child is a zombie, without reaping it.
	statPath := fmt.Sprintf("/proc/%d/stat", zombieCmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); processMayExist(zombieCmd.Process.Pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(statPath)
			t.Fatalf("killed child still counted as running: %s", b)
		}
	}
	zombie := filepath.Join(dir, fmt.Sprintf("%s%d-2", stagingPrefix, zombieCmd.Process.Pid))
	dead := filepath.Join(dir, stagingPrefix+"999999999-3")
	other := filepath.Join(dir, "region_0")
	for _, d := range []string{live, zombie, dead, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(statPath); err != nil {
		t.Fatalf("the child was reaped before the check: %v", err)
	}
	if err := CleanStale(dir); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{live: true, zombie: false, dead: false, other: true} {
		_, err := os.Stat(d)
		if got := err == nil; got != want {
			t.Errorf("%s: present %v, want %v", filepath.Base(d), got, want)
		}
	}
}
