package ocilayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

const usernsChildEnv = "OCILAYER_TEST_USERNS_CHILD"

// TestApplyDevicesNotPermitted runs in a new user namespace, where mknod of
// devices fails with EPERM even for the namespace's root.
func TestApplyDevicesNotPermitted(t *testing.T) {
	if os.Getenv(usernsChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestApplyDevicesNotPermitted$", "-test.v")
		cmd.Env = append(os.Environ(), usernsChildEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}
		out, err := cmd.CombinedOutput()
		if err != nil && cmd.ProcessState == nil {
			t.Skipf("cannot start a process in a new user namespace (%v); needs unprivileged user namespaces or root", err)
		}
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestApplyDevicesNotPermitted")) {
			t.Fatalf("in a user namespace: %v\n%s", err, out)
		}
		return
	}

	l := layer(t,
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600}},
	)
	_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(l))
	var ee *EntryError
	if !errors.Is(err, ErrUnsupported) || !errors.Is(err, fs.ErrPermission) || !errors.As(err, &ee) || ee.Op != "mknod" || ee.Entry != "null" {
		t.Fatalf("Apply of a device: %v; want *EntryError for null, op mknod, matching ErrUnsupported and fs.ErrPermission", err)
	}
	root := t.TempDir()
	if _, err := Apply(context.Background(), root, bytes.NewReader(l), WithSkipDevices()); err != nil {
		t.Fatalf("Apply WithSkipDevices: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "null")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("null: Lstat = %v; want the device skipped", err)
	}
	if fi, err := os.Lstat(filepath.Join(root, "fifo")); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo: Lstat = %v, %v; want a fifo", fi, err)
	}
}
