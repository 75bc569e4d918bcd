package diskfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// Mount mounts the file system on device at mountpoint (an existing
// directory): ext4 with mount(2), NTFS with the kernel's ntfs3 driver when it
// has one, else with ntfs-3g.
func Mount(ctx context.Context, device, mountpoint string, readOnly bool) error {
	fsys, err := Probe(device)
	if err != nil {
		return err
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	switch fsys {
	case Ext4:
		if err := unix.Mount(device, mountpoint, "ext4", flags, ""); err != nil {
			return fmt.Errorf("diskfs: mounting %s on %s: %w", device, mountpoint, err)
		}
		return nil
	case NTFS:
		if kernelHas("ntfs3") {
			if err := unix.Mount(device, mountpoint, "ntfs3", flags, ""); err == nil {
				return nil
			}
		}
		args := []string{device, mountpoint}
		if readOnly {
			args = append(args, "-o", "ro")
		}
		return runTool(ctx, "ntfs-3g", "ntfs-3g", args...)
	}
	return fmt.Errorf("diskfs: mounting %s: %w", device, ErrUnknownFilesystem)
}

// kernelHas reports whether /proc/filesystems lists fstype.
func kernelHas(fstype string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

// Unmount unmounts mountpoint.
func Unmount(mountpoint string) error {
	if err := unix.Unmount(mountpoint, 0); err != nil {
		return fmt.Errorf("diskfs: unmounting %s: %w", mountpoint, err)
	}
	return nil
}

// Grow grows the file system on device to the size of the device. mounted
// says whether it is mounted: ext4 then grows online (resize2fs asks the
// kernel, which wants CAP_SYS_RESOURCE: ErrOnlineNotPermitted without it);
// unmounted ext4 is checked with e2fsck first, as resize2fs requires. NTFS
// grows only unmounted (ErrOfflineOnly).
func Grow(ctx context.Context, device string, mounted bool) error {
	fsys, err := Probe(device)
	if err != nil {
		return err
	}
	switch fsys {
	case Ext4:
		if mounted && !capabilityCheck(unix.CAP_SYS_RESOURCE) {
			return fmt.Errorf("diskfs: growing %s: %w", device, ErrOnlineNotPermitted)
		}
		if !mounted {
			// -p repairs what is safe; exit codes 1 and 2 mean "fixed".
			if err := runTool(ctx, "e2fsprogs", "e2fsck", "-f", "-p", device); err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() > 2 {
					return err
				}
			}
		}
		err := runTool(ctx, "e2fsprogs", "resize2fs", device)
		if mounted && err != nil && strings.Contains(err.Error(), "Permission denied to resize") {
			// The capability is in effect but not in the initial user
			// namespace, where the kernel looks for it.
			return fmt.Errorf("diskfs: growing %s: %w: %w", device, ErrOnlineNotPermitted, err)
		}
		return err
	case NTFS:
		if mounted {
			return fmt.Errorf("diskfs: growing %s: %w", device, ErrOfflineOnly)
		}
		return runTool(ctx, "ntfs-3g", "ntfsresize", "--force", "--no-progress-bar", device)
	}
	return fmt.Errorf("diskfs: growing %s: %w", device, ErrUnknownFilesystem)
}

// capabilityCheck is hasCapability; tests replace it to reach the kernel's
// own refusal.
var capabilityCheck = hasCapability

// hasCapability reports whether the process has capability c in effect.
func hasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}

// GrowInPlace grows the file system on device to the device's size wherever
// it is: unmounted, mounted (online, when the kernel allows it), or mounted
// where online growth is impossible (NTFS, or ext4 without
// CAP_SYS_RESOURCE), in which case every mount of the device is unmounted,
// the file system grown offline, and the mounts made again at the same
// places with the same flags. If a mount is busy nothing is grown and the
// mounts stay as they were; the error matches unix.EBUSY.
func GrowInPlace(ctx context.Context, device string) error {
	mounts, err := mountsOf(device)
	if err != nil {
		return err
	}
	if len(mounts) == 0 {
		return Grow(ctx, device, false)
	}
	err = Grow(ctx, device, true)
	if !errors.Is(err, ErrOfflineOnly) && !errors.Is(err, ErrOnlineNotPermitted) {
		return err
	}
	// Unmount the most recent mount first; remount in the original order.
	var done []mountinfo.Mount
	remount := func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if err := mountAgain(ctx, device, done[i]); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i].Mountpoint, 0); err != nil {
			rerr := remount()
			return errors.Join(fmt.Errorf("diskfs: growing %s offline: unmounting %s: %w", device, mounts[i].Mountpoint, err), rerr)
		}
		done = append([]mountinfo.Mount{mounts[i]}, done...)
	}
	gerr := Grow(ctx, device, false)
	return errors.Join(gerr, remount())
}

// mountsOf returns the mounts of device's whole file system, in mount order.
func mountsOf(device string) ([]mountinfo.Mount, error) {
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		return nil, err
	}
	all, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var out []mountinfo.Mount
	for _, m := range all {
		if m.Major == unix.Major(st.Rdev) && m.Minor == unix.Minor(st.Rdev) {
			if m.Root != "/" {
				return nil, fmt.Errorf("diskfs: %s is bind-mounted at %s; unmount it first", device, m.Mountpoint)
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// mountAgain mounts device as m was mounted.
func mountAgain(ctx context.Context, device string, m mountinfo.Mount) error {
	var flags uintptr
	for _, o := range strings.Split(m.Options, ",") {
		flags |= mountFlags[o]
	}
	if strings.HasPrefix(m.FSType, "fuse") {
		// ntfs-3g
		args := []string{device, m.Mountpoint}
		if flags&unix.MS_RDONLY != 0 {
			args = append(args, "-o", "ro")
		}
		return runTool(ctx, "ntfs-3g", "ntfs-3g", args...)
	}
	if err := unix.Mount(device, m.Mountpoint, m.FSType, flags, superData(m.SuperOptions)); err != nil {
		return fmt.Errorf("diskfs: mounting %s on %s again: %w", device, m.Mountpoint, err)
	}
	return nil
}

// mountFlags maps per-mount options of mountinfo to mount(2) flags.
var mountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
	"noexec": unix.MS_NOEXEC, "sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC,
	"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME,
	"strictatime": unix.MS_STRICTATIME, "lazytime": unix.MS_LAZYTIME,
}

// superData keeps the super options that mount(2) takes back as data,
// dropping the ones the kernel only reports.
func superData(opts string) string {
	var keep []string
	for _, o := range strings.Split(opts, ",") {
		switch {
		case o == "rw", o == "ro", o == "", strings.HasPrefix(o, "seclabel"):
			continue
		}
		keep = append(keep, o)
	}
	return strings.Join(keep, ",")
}
