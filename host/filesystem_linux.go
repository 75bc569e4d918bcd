package host

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// GrowFilesystem grows the file system on device to the device's size
// wherever it is: unmounted, mounted (online, when the kernel allows it), or
// mounted where online growth is impossible (NTFS, or ext4 without
// CAP_SYS_RESOURCE), in which case every mount of the device is unmounted,
// the file system grown offline, and the mounts made again at the same
// places with the same options (a plan of the one executor). If a mount is
// busy nothing is grown and the mounts stay as they were; the error matches
// unix.EBUSY.
func GrowFilesystem(ctx context.Context, device string) error {
	mounts, err := mountsOf(device)
	if err != nil {
		return err
	}
	if len(mounts) == 0 {
		return diskfs.Grow(ctx, device, false)
	}
	err = diskfs.Grow(ctx, device, true)
	if !errors.Is(err, diskfs.ErrOfflineOnly) && !errors.Is(err, diskfs.ErrOnlineNotPermitted) {
		return err
	}
	// Unmount the most recent mount first; remount in the original order.
	var done []mountinfo.Mount
	remount := func() error {
		var plan Plan
		for _, m := range done {
			plan = append(plan, remountStep(device, m))
		}
		_, err := Apply(ctx, plan)
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := mount.Unmount(mounts[i].Mountpoint); err != nil {
			rerr := remount()
			return errors.Join(fmt.Errorf("host: growing %s offline: unmounting %s: %w", device, mounts[i].Mountpoint, err), rerr)
		}
		done = append([]mountinfo.Mount{mounts[i]}, done...)
	}
	gerr := diskfs.Grow(ctx, device, false)
	return errors.Join(gerr, remount())
}

// remountStep is the step that mounts device again as m was mounted.
func remountStep(device string, m mountinfo.Mount) Mount {
	typ := mount.TypeExt4
	if m.FSType != "ext4" {
		typ = mount.TypeNTFS // ntfs3, or ntfs-3g (fuseblk)
	}
	step := Mount{Type: typ, Source: device, Target: m.Mountpoint}
	for _, o := range strings.Split(m.Options, ",") {
		switch o {
		case "ro", "nosuid", "nodev", "noexec", "sync", "dirsync", "noatime", "nodiratime", "relatime", "strictatime", "lazytime":
			step.Options = append(step.Options, o)
		}
	}
	if typ == mount.TypeExt4 {
		for _, o := range strings.Split(m.SuperOptions, ",") {
			switch {
			case o == "rw", o == "ro", o == "", strings.HasPrefix(o, "seclabel"):
				continue
			}
			step.Options = append(step.Options, o)
		}
	}
	return step
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
				return nil, fmt.Errorf("host: %s is bind-mounted at %s; unmount it first", device, m.Mountpoint)
			}
			out = append(out, m)
		}
	}
	return out, nil
}
