package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// scratchTempInfix marks the temporary file a scratch disk is made in.
const scratchTempInfix = ".hcs-scratch-"

// createScratch makes the scratch disk path, which must not exist: a sparse fixed
// VHD of size bytes holding an empty ext4 file system. The disk is made under a
// temporary name next to path, synced and renamed into place, so path is either
// absent or complete. The temporary file is locked while it is made; unlocked
// leftovers of a crashed creation are removed first.
func createScratch(ctx context.Context, path string, size int64) error {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("formatting the scratch disk needs mkfs.ext4 (e2fsprogs): %w", err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStaleScratchTemps(dir, base)
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+base+scratchTempInfix+hex.EncodeToString(rnd[:]))
	d, err := vhd.Create(tmp, vhd.CreateOptions{Type: vhd.DiskTypeFixed, Size: size})
	if err != nil {
		return err
	}
	if err := d.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	lock, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.Remove(tmp)
		return err
	}
	defer lock.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	// The file system covers the data area only: the footer stays after it.
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", "-L", "scratch",
		tmp, fmt.Sprintf("%dk", size/1024))
	// mkfs.ext4 opens the file by name more than once, creating it when it is
	// missing: if this process is killed, mkfs.ext4 must die with it, or it
	// makes the temporary file again after the next call removed it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if info, err := inspectDisk(tmp); err != nil || info.sizeLimit != size {
		return fmt.Errorf("the VHD footer did not survive mkfs.ext4 (%v)", err)
	}
	if err := lock.Sync(); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("renaming into place: %w", err)
	}
	ok = true
	atomicfile.SyncDir(dir)
	return nil
}

// removeStaleScratchTemps removes the temporary files of scratch disks named base in
// dir whose maker is gone (their lock is free).
func removeStaleScratchTemps(dir, base string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := "." + base + scratchTempInfix
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

// CreateScratchVHD makes the scratch disk path, which must not exist: a
// sparse fixed VHD of size bytes holding an empty ext4 file system, staged
// under a temporary name and renamed into place complete. It is the disk
// MountLCOW makes when a stack's scratch is missing.
func CreateScratchVHD(ctx context.Context, path string, size int64) error {
	return createScratch(ctx, path, size)
}
