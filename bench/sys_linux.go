package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// cpuTime returns the user and system CPU time of an exited command, its waited-for
// children included.
func cpuTime(ps *os.ProcessState) time.Duration {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// syncAll flushes every filesystem, so that the next timed run starts without dirty
// pages left by the previous one.
func syncAll() { unix.Sync() }

// kernel returns the kernel release and machine, as uname -rm prints them.
func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
}

// mountOf finds the mount holding path: the deepest mount point above it.
func mountOf(path string) (mountinfo.Mount, bool) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		p = path
	}
	if p, err = filepath.Abs(p); err != nil {
		return mountinfo.Mount{}, false
	}
	ms, err := mountinfo.Read()
	if err != nil {
		return mountinfo.Mount{}, false
	}
	return mountinfo.Containing(ms, p)
}

// filesystem describes the filesystem holding path: type, mount point, source,
// mount options and, for ext4, whether it has a journal.
func filesystem(path string) string {
	m, ok := mountOf(path)
	if !ok {
		return "unknown"
	}
	desc := fmt.Sprintf("%s on %s from %s (%s; %s)", m.FSType, m.Mountpoint, m.Source, m.Options, m.SuperOptions)
	if m.FSType == "ext4" {
		if ext4WithoutJournal(path) {
			desc += ", no journal"
		} else {
			desc += ", with a journal"
		}
	}
	return desc
}

// ext4WithoutJournal reports whether path is on ext4 without a journal. A mounted
// ext4 with a journal has a jbd2 entry /proc/fs/jbd2/<block device>-8, named after
// the device's kernel name (/sys/dev/block/<major:minor>).
func ext4WithoutJournal(path string) bool {
	m, ok := mountOf(path)
	if !ok || m.FSType != "ext4" {
		return false
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", m.Major, m.Minor))
	if err != nil {
		return true // cannot tell: assume the slow case, which only costs waiting
	}
	_, err = os.Stat("/proc/fs/jbd2/" + filepath.Base(link) + "-8")
	return err != nil
}

// freeSpace returns the bytes available to unprivileged users on path's filesystem.
func freeSpace(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

// freePageReporting reports whether the machine is a virtual machine whose balloon
// device takes free memory back (VIRTIO_BALLOON_F_REPORTING, feature bit 5): free
// pages are handed to the hypervisor after a few seconds, and touching them again
// costs a fault in the hypervisor, about a second per GiB on these machines.
func freePageReporting() bool {
	devs, _ := filepath.Glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*")
	for _, d := range devs {
		b, err := os.ReadFile(filepath.Join(d, "features"))
		if err == nil && len(b) > 5 && b[5] == '1' {
			return true
		}
	}
	return false
}

// reportingOrder is the balloon's knob: free blocks of at least this order (in
// pages) are reported to the hypervisor. Above the largest order the buddy
// allocator has (10 on x86-64, so 11 block orders), no block qualifies.
const (
	reportingOrder   = "/sys/module/page_reporting/parameters/page_reporting_order"
	noReportingOrder = "11"
	savedOrderFile   = "page_reporting_order.saved"
)

// holdFreeMemory stops free page reporting while the bench runs, so that memory
// made resident stays resident: with reporting on, the hypervisor takes free
// blocks back every two seconds, and a run that then writes a GiB into the page
// cache pays a fault in the hypervisor for most of its pages, which made the
// same run take from 1.3 s to 3.5 s. It sets the reporting order above the
// largest block order and makes all free memory but 512 MiB resident once. The
// value it replaced is saved in stateDir first, so that a bench killed before
// restoring it lets the next one restore it. restore puts the saved value back.
func holdFreeMemory(stateDir string) (restore func() error, err error) {
	saved := filepath.Join(stateDir, savedOrderFile)
	orig, err := os.ReadFile(saved)
	if err != nil {
		if orig, err = os.ReadFile(reportingOrder); err != nil {
			return nil, err
		}
		if err := os.WriteFile(saved, orig, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(reportingOrder, []byte(noReportingOrder), 0o644); err != nil {
		os.Remove(saved)
		return nil, fmt.Errorf("stopping free page reporting: %w", err)
	}
	prefault(memInfo("MemFree"))
	return func() error {
		if err := os.WriteFile(reportingOrder, bytes.TrimSpace(orig), 0o644); err != nil {
			return fmt.Errorf("restoring %s to %s: %w", reportingOrder, bytes.TrimSpace(orig), err)
		}
		return os.Remove(saved)
	}, nil
}

// prefault makes up to n bytes of free memory resident and frees them again, keeping
// 512 MiB free and never pushing out cached files. Pages go back to the hypervisor a
// slice at a time, every two seconds, and those already reported are queued behind
// the others for allocation, so a run started right after mostly finds backed pages,
// whatever the runs before it left behind.
func prefault(n int64) {
	n = min(n, memInfo("MemFree")-512<<20)
	if n <= 0 {
		return
	}
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err == nil {
		unix.Munmap(b)
	}
}

// memInfo returns a field of /proc/meminfo in bytes, 0 if absent.
func memInfo(field string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == field+":" {
			kib, _ := strconv.ParseInt(f[1], 10, 64)
			return kib << 10
		}
	}
	return 0
}

// evictTree drops the cached pages of the regular files under dir (already written
// back) from the page cache. Errors are ignored: this only steadies the figures.
func evictTree(dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		unix.Close(fd)
		return nil
	})
}
