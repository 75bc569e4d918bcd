package proctest

import (
	"os/exec"
	"testing"
	"time"
)

func TestKillWait(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	if err := WaitExit(cmd.Process.Pid, 100*time.Millisecond); err == nil {
		t.Fatal("WaitExit returned for a running process")
	}
	if err := KillWait(cmd.Process.Pid, Timeout); err != nil {
		t.Fatal(err)
	}
	<-done
	if ws := cmd.ProcessState; ws == nil || ws.Success() {
		t.Fatalf("process state %v after KillWait", ws)
	}
}
