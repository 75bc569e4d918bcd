package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/console"
)

// TestRunTerminalOutput runs `hcs run -t` on a pseudo-terminal whose input
// holds an end-of-file typed ahead in canonical mode (what script(1) sends when
// its own input ends), and checks that the output is the container's and
// nothing else: no NUL (the end-of-file marker, which leaving canonical mode
// turns into a NUL byte, echoed by the container's terminal as "^@") and no
// doubled carriage return (output processing on both terminals).
func TestRunTerminalOutput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	bin := hcsBinary(t)
	layer := busyboxDir(t)
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Skip("no pseudo-terminals: ", err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// ^D on an empty line: a zero-length line, an end-of-file for a
	// canonical reader, a NUL for a raw one.
	if _, err := master.Write([]byte{4}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-t", "--scratch", filepath.Join(t.TempDir(), "scratch"), "-l", layer, "--", "sh", "-c", "sleep 0.2; echo a; echo b")
	cmd.Env = append(os.Environ(), "HOSTCOMPUTE_COMPUTE_STATE_DIR="+t.TempDir())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, master); close(copied) }() // ends with EIO when the last slave closes
	werr := cmd.Wait()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	if werr != nil {
		t.Fatalf("hcs run -t: %v: %q", werr, out.String())
	}
	if got, want := out.String(), "a\r\nb\r\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}
