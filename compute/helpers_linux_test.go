package compute

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/pkg/ext4"
)

func TestMain(m *testing.M) {
	MaybeRunHelper()
	fusefs.MaybeRunHelper()
	code := m.Run()
	if stateDir != "" {
		// Containers are all deleted by now; what is left is runc's empty root.
		os.RemoveAll(stateDir)
	}
	os.Exit(code)
}

// needRoot skips t unless runc, busybox and root are there.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed (apt-get install runc)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed")
	}
}

var stateDir string

// setState gives the test binary's containers state directories of their own.
// Tests in one binary share it (the monitors are re-executed with it).
func setState(t testing.TB) {
	t.Helper()
	if stateDir == "" {
		d, err := os.MkdirTemp("", "compute-state")
		if err != nil {
			t.Fatal(err)
		}
		stateDir = d
		os.Setenv("HOSTCOMPUTE_COMPUTE_STATE_DIR", filepath.Join(d, "compute"))
		os.Setenv("HOSTCOMPUTE_STATE_DIR", d) // the host engine's state: layers/, attach/, fuse/
	}
}

// busyboxLayer makes a directory layer with /bin/busybox and its links.
func busyboxLayer(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "base")
	bin := filepath.Join(d, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output() // not the copy: a parallel fork may hold it open for writing (ETXTBSY)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			os.Symlink("busybox", filepath.Join(bin, name))
		}
	}
	for _, sub := range []string{"etc", "tmp", "proc", "sys", "dev"} {
		os.MkdirAll(filepath.Join(d, sub), 0o755)
	}
	os.WriteFile(filepath.Join(d, "etc", "passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644)
	return d
}

var seq atomic.Int64

func uniqueID(t testing.TB) string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), seq.Add(1))
}

// newContainer creates a container over a busybox directory layer, removed at
// the end of the test, where nothing of it may be left.
func newContainer(t testing.TB, mod func(*Config)) *Container {
	t.Helper()
	needRoot(t)
	setState(t)
	cfg := Config{ID: uniqueID(t), Scratch: filepath.Join(t.TempDir(), "scratch"), Layers: []Layer{{ID: "base", Path: busyboxLayer(t)}}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Delete(ctx, true); err != nil {
			t.Errorf("delete: %v", err)
		}
		assertGone(t, cfg.ID)
	})
	return c
}

// assertGone fails t if anything of container id is left.
func assertGone(t testing.TB, id string) {
	t.Helper()
	if exists(containerDir(id)) {
		t.Errorf("state directory %s left", containerDir(id))
	}
	if exists(filepath.Join(runcRoot(), id)) {
		t.Errorf("runc state of %s left", id)
	}
	if left := LeftCgroups(id); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	ms, _ := mountinfo.Read()
	for _, m := range ms {
		if strings.Contains(m.Mountpoint, "/"+id+"/") || strings.HasSuffix(m.Source, ":"+id) {
			t.Errorf("mount left: %s on %s", m.Source, m.Mountpoint)
		}
	}
}

// run starts (or execs) args in c with pipes, and returns stdout, stderr and the exit.
func run(t testing.TB, c *Container, init bool, stdin string, args ...string) (string, string, *Exit) {
	t.Helper()
	ctx := context.Background()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	spec := &ProcessSpec{Args: args, Stdin: inR, Stdout: outW, Stderr: errW}
	var p *Process
	var err error
	if init {
		p, err = c.Start(ctx, spec)
	} else {
		p, err = c.Exec(ctx, spec)
	}
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() { io.WriteString(inW, stdin); inW.Close() }()
	var stdout, stderr bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&stderr, errR); close(done) }()
	io.Copy(&stdout, outR)
	<-done
	e, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), e
}

// ext4Layer makes an ext4 layer image (layer.vhd in a folder) of the busybox tree.
func ext4Layer(t testing.TB) string {
	t.Helper()
	src := busyboxLayer(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, _ := tar.FileInfoHeader(fi, link)
		h.Name = rel
		tw.WriteHeader(h)
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			tw.Write(b)
		}
		return nil
	})
	tw.Close()
	dir := filepath.Join(t.TempDir(), "ext4layer")
	os.MkdirAll(dir, 0o755)
	f, err := os.Create(filepath.Join(dir, "layer.vhd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ext4.Build(context.Background(), f, &buf); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loopsOf returns the loop devices backed by files under dir.
func loopsOf(dir string) []string {
	var out []string
	ms, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, m := range ms {
		b, _ := os.ReadFile(m)
		if strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			out = append(out, m)
		}
	}
	return out
}
