package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// busyboxTar lists a minimal root file system around Debian's static busybox:
// /bin/busybox, applet links, the directories runc mounts on, and /deleted for the
// next layer to remove.
func busyboxTar(t *testing.T, bin string) []tarEntry {
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ents := []tarEntry{}
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/"} {
		ents = append(ents, tarEntry{name: d, typ: tar.TypeDir})
	}
	ents = append(ents, tarEntry{name: "bin/busybox", typ: tar.TypeReg, body: b, mode: 0o755})
	for _, applet := range []string{"sh", "cat", "test", "echo", "ls"} {
		ents = append(ents, tarEntry{name: "bin/" + applet, typ: tar.TypeSymlink, link: "busybox", mode: 0o777})
	}
	return append(ents, tarEntry{name: "deleted", typ: tar.TypeReg, body: []byte("removed by the top layer")})
}

// TestRuncOnLCOWLayers runs a process with runc on a busybox root file system made of
// three ext4 layer images, built from tars, mounted by MountLCOWLayers.
func TestRuncOnLCOWLayers(t *testing.T) {
	needRoot(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not found")
	}
	bin := "/usr/bin/busybox"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("busybox-static not installed:", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	cleanupMounts(t, dir)
	// Three layers built from OCI layer tars by pkg/ext4: the base, one adding
	// /etc/hello, one deleting /deleted with an OCI whiteout.
	base := tarLayerVHD(t, dir, "busybox", busyboxTar(t, bin))
	add := tarLayerVHD(t, dir, "hello", []tarEntry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/hello", typ: tar.TypeReg, body: []byte("hello from a layer\n")},
	})
	del := tarLayerVHD(t, dir, "delete", []tarEntry{{name: ".wh.deleted", typ: tar.TypeReg}})
	ls := &LCOWLayers{Layers: []*LCOWLayer{{VHDPath: del}, {VHDPath: add}, {VHDPath: base}}, ScratchVHDPath: filepath.Join(dir, "sandbox.vhd")}
	rootfs, scratch, closer, err := MountLCOWLayers(ctx, "runc-test", ls, filepath.Join(dir, "c"), nil, WithScratchSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			closer.Release(ctx)
		}
	}()

	bundle := filepath.Join(dir, "bundle")
	state := filepath.Join(dir, "runc-state")
	os.Mkdir(bundle, 0o755)
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sh", "-c", "cat /etc/hello; test ! -e /deleted && echo ran > /tmp/written"}
	cfg["root"] = map[string]any{"path": rootfs, "readonly": false}
	cfg["hostname"] = "layers"
	if b, err = json.MarshalIndent(cfg, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	id := fmt.Sprintf("hcs-layers-%d", os.Getpid())
	cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if out, derr := exec.Command(runc, "--root", state, "delete", "--force", id).CombinedOutput(); derr != nil && !strings.Contains(string(out), "does not exist") {
		t.Errorf("runc delete: %v: %s", derr, out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("runc run: exit status %d\nstdout: %s\nstderr: %s", ee.ExitCode(), stdout.String(), stderr.String())
	} else if err != nil {
		t.Fatalf("runc run: %v\n%s", err, stderr.String())
	}
	if stdout.String() != "hello from a layer\n" {
		t.Errorf("output %q, want the second layer's /etc/hello", stdout.String())
	}
	if b, err := os.ReadFile(filepath.Join(scratch, UpperDir, "tmp", "written")); err != nil || string(b) != "ran\n" {
		t.Errorf("the container's write is not in the scratch's upper directory: %q, %v", b, err)
	}

	released = true
	if err := closer.Release(ctx); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
}
