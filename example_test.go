package hostcompute_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	hcsshim "github.com/hostcompute/hostcompute"
)

// busyboxLayer makes a directory layer holding busybox and its links: the
// example's image.
func busyboxLayer(dir string) (string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", err
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			os.Symlink("busybox", filepath.Join(bin, name))
		}
	}
	return dir, nil
}

// A container made, started and run through hcsshim's compute API. This whole
// file compiles unchanged against github.com/Microsoft/hcsshim (imported as
// hcsshim): TestExampleCompilesAgainstHcsshim builds it for Windows with only
// the import path changed. Here it runs with runc; it needs root, runc and
// busybox-static.
func ExampleCreateContainer() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	base, err := busyboxLayer(filepath.Join(dir, "base"))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := run(filepath.Join(dir, "scratch"), base); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// hello from the container
	// exit code 3
}

func run(scratch, base string) error {
	c, err := hcsshim.CreateContainer("example-container", &hcsshim.ContainerConfig{
		SystemType:      "Container",
		Name:            "example-container",
		LayerFolderPath: scratch,
		Layers:          []hcsshim.Layer{{ID: "8e3c5f2a-0000-0000-0000-000000000001", Path: base}},
		HostName:        "example",
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		return err
	}
	p, err := c.CreateProcess(&hcsshim.ProcessConfig{
		CommandLine:      "sh -c 'read line; echo $line; exit 3'",
		Environment:      map[string]string{"GREETING": "hello"},
		CreateStdInPipe:  true,
		CreateStdOutPipe: true,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	stdin, stdout, _, err := p.Stdio()
	if err != nil {
		return err
	}
	io.WriteString(stdin, "hello from the container\n")
	stdin.Close()
	p.CloseStdin()
	io.Copy(os.Stdout, stdout)
	stdout.Close()
	if err := p.Wait(); err != nil {
		return err
	}
	code, err := p.ExitCode()
	if err != nil {
		return err
	}
	fmt.Println("exit code", code)
	// The process was the container's first, so the container stops with it;
	// a Shutdown of a stopped container reports it already stopped.
	if err := c.Shutdown(); err != nil && !hcsshim.IsPending(err) && !hcsshim.IsAlreadyStopped(err) {
		return err
	}
	return c.Wait()
}
