package compute

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cgroupParent holds the containers' cgroups: <hierarchy>/hostcompute/<id>.
const cgroupParent = "/hostcompute"

func cgroupsPath(id string) string { return cgroupParent + "/" + id }

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultCaps are the capabilities of container processes (runc's default set).
var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// processSpec is the OCI process of p.
func processSpec(p *ProcessSpec) specs.Process {
	env := append([]string(nil), p.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(env, defaultPath)
	}
	if p.Terminal && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	sp := specs.Process{
		Terminal: p.Terminal,
		Args:     p.Args,
		Env:      env,
		Cwd:      cwd,
		Capabilities: &specs.LinuxCapabilities{
			Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
		},
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		NoNewPrivileges: true,
	}
	if p.Terminal && (p.ConsoleWidth != 0 || p.ConsoleHeight != 0) {
		sp.ConsoleSize = &specs.Box{Width: uint(p.ConsoleWidth), Height: uint(p.ConsoleHeight)}
	}
	return sp
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

// cpuShares maps a weight 1..10000 to cgroup v1 shares 2..262144 linearly; runc
// maps shares to a v2 weight by the inverse rule.
func cpuShares(w uint64) uint64 {
	if w == 0 {
		return 0
	}
	if w > 10000 {
		w = 10000
	}
	return 2 + (w-1)*262142/9999
}

// cfsPeriod is the CFS period of a CPU maximum, in microseconds.
const cfsPeriod = 100000

// warmSpecEncoding builds encoding/json's encoders for the OCI spec's types,
// once per process. json.Marshal builds them by reflection on first use, about
// 1.6 ms here for the spec's few dozen types; Create starts this on another
// core while it makes the container's state and mounts its root, so that the
// bundle's config.json, written when the container starts, does not wait for it.
var warmSpecEncoding = sync.OnceFunc(func() {
	json.Marshal(&specs.Spec{})
	json.Marshal(&specs.Process{})
})

// bundleSpec is the OCI spec of the container r with init process p.
func bundleSpec(r *record, p *ProcessSpec, blockDev *specs.LinuxWeightDevice) (*specs.Spec, error) {
	cfg := &r.Config
	ps := processSpec(p)
	s := &specs.Spec{
		Version:  specs.Version,
		Process:  &ps,
		Root:     &specs.Root{Path: r.Rootfs},
		Hostname: cfg.Hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath(r.ID),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: cfg.NetNS},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		},
	}
	for _, m := range cfg.Mounts {
		st, err := os.Stat(m.Source)
		if err != nil {
			return nil, fmt.Errorf("mapped directory %s: %w", m.Source, err)
		}
		if !st.IsDir() && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: mapped directory %s is neither a directory nor a file", ErrInvalidArgument, m.Source)
		}
		if !filepath.IsAbs(m.Destination) {
			return nil, fmt.Errorf("%w: mapped directory's container path %q is not absolute", ErrInvalidArgument, m.Destination)
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if m.ReadOnly {
			opts[2] = "ro"
		}
		src, _ := filepath.Abs(m.Source)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: src, Options: opts})
	}
	res := s.Linux.Resources
	rc := &cfg.Resources
	if rc.MemoryBytes > 0 {
		lim := rc.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &lim, Swap: &lim}
	}
	cpu := &specs.LinuxCPU{}
	useCPU := false
	if rc.CPUCount > 0 {
		n := runtime.NumCPU()
		if int(rc.CPUCount) < n {
			n = int(rc.CPUCount)
		}
		cpu.Cpus = fmt.Sprintf("0-%d", n-1)
		if n == 1 {
			cpu.Cpus = "0"
		}
		useCPU = true
	}
	if sh := cpuShares(rc.CPUWeight); sh > 0 {
		cpu.Shares = &sh
		useCPU = true
	}
	if rc.CPUMaximum > 0 {
		if rc.CPUMaximum > 100 {
			return nil, fmt.Errorf("%w: ProcessorMaximum %d: want 1..100 (percent)", ErrInvalidArgument, rc.CPUMaximum)
		}
		period := uint64(cfsPeriod)
		quota := int64(period) * int64(runtime.NumCPU()) * rc.CPUMaximum / 100
		if quota < 1000 {
			quota = 1000
		}
		cpu.Period, cpu.Quota = &period, &quota
		useCPU = true
	}
	if useCPU {
		res.CPU = cpu
	}
	if (rc.IOPSMaximum > 0 || rc.BandwidthMaximum > 0) && blockDev != nil {
		bio := &specs.LinuxBlockIO{}
		dev := specs.LinuxBlockIODevice{Major: blockDev.Major, Minor: blockDev.Minor}
		if rc.IOPSMaximum > 0 {
			bio.ThrottleReadIOPSDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: rc.IOPSMaximum}}
			bio.ThrottleWriteIOPSDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: rc.IOPSMaximum}}
		}
		if rc.BandwidthMaximum > 0 {
			bio.ThrottleReadBpsDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: rc.BandwidthMaximum}}
			bio.ThrottleWriteBpsDevice = []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: rc.BandwidthMaximum}}
		}
		res.BlockIO = bio
	}
	// Access to the usual device nodes, as runc's default spec allows.
	for _, d := range []struct {
		major, minor int64
	}{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}} {
		major, minor := d.major, d.minor
		res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"})
	}
	ptsMajor := int64(136)
	res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &ptsMajor, Access: "rwm"})
	return s, nil
}

// scratchDevice returns the whole-disk block device holding the container's
// writable layer, the device that storage limits throttle.
func scratchDevice(r *record) (*specs.LinuxWeightDevice, error) {
	path := r.Config.Scratch
	if r.RootKind == "lcow" {
		path = filepath.Join(filepath.Dir(r.Rootfs), ScratchUpper)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	major, minor := int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev))
	// A partition is throttled through its disk.
	if link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)); err == nil {
		sys := filepath.Join("/sys/dev/block", link)
		if exists(filepath.Join(sys, "partition")) {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(sys), "dev")); err == nil {
				fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor)
			}
		}
	} else {
		return nil, fmt.Errorf("%w: the scratch %s is not on a block device (%d:%d), so its storage cannot be throttled", ErrUnsupported, path, major, minor)
	}
	return &specs.LinuxWeightDevice{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}}, nil
}
