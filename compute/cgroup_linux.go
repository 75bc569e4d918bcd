package compute

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// cgroupDirs returns the container's cgroup directory in every mounted cgroup
// hierarchy (v1 controllers, the v2 unified hierarchy), whether it exists or not.
func cgroupDirs(id string) ([]string, error) {
	ms, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var dirs []string
	for _, m := range ms {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		d := filepath.Join(m.Mountpoint, cgroupsPath(id))
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// LeftCgroups returns the container's cgroup directories that exist; after the
// container is gone there are none.
func LeftCgroups(id string) []string {
	dirs, _ := cgroupDirs(id)
	var left []string
	for _, d := range dirs {
		if exists(d) {
			left = append(left, d)
		}
	}
	return left
}

// removeCgroups kills what is left in the container's cgroups and removes them
// (runc delete normally has; a runc killed half-way may not have).
func removeCgroups(id string) error {
	dirs, err := cgroupDirs(id)
	if err != nil {
		return err
	}
	// One hierarchy at a time would pay each rmdir's wait (cgroup v1 removal
	// waits for the kernel's grace period) one after another: a dozen
	// hierarchies made that the larger part of a short container's stop.
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		if !exists(d) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A container that stopped left its cgroups empty and without
			// children: one rmdir removes each, where killing and walking it
			// first reads every control file's entry.
			if unix.Rmdir(d) == nil {
				return
			}
			var err error
			for try := 0; try < 100; try++ {
				killCgroup(d)
				if err = removeTree(d); err == nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			errs[i] = fmt.Errorf("removing cgroup %s: %w", d, err)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// killCgroup SIGKILLs every process in the cgroup d and its children, thawing
// a frozen one first so that the kill is delivered.
func killCgroup(d string) {
	filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(filepath.Join(p, "freezer.state")); err == nil && !strings.HasPrefix(string(b), "THAWED") {
			os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0)
		}
		if exists(filepath.Join(p, "cgroup.freeze")) {
			os.WriteFile(filepath.Join(p, "cgroup.freeze"), []byte("0"), 0)
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		return nil
	})
}

// removeTree removes the cgroup directory d and its child cgroups, deepest first.
func removeTree(d string) error {
	entries, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(d, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// isCgroup2 reports whether /sys/fs/cgroup is the unified hierarchy (runc then
// uses cgroup v2 alone).
func isCgroup2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// memoryCgroup is the container's memory cgroup directory.
func memoryCgroup(id string) string {
	if isCgroup2() {
		return filepath.Join("/sys/fs/cgroup", cgroupsPath(id))
	}
	return filepath.Join("/sys/fs/cgroup/memory", cgroupsPath(id))
}

// oomKills counts the processes the OOM killer ended in the container's memory
// cgroup: "oom_kill" of memory.oom_control (v1) or memory.events (v2).
func oomKills(id string) uint64 {
	d := memoryCgroup(id)
	for _, f := range []string{"memory.events", "memory.oom_control"} {
		if n, ok := keyedValue(filepath.Join(d, f), "oom_kill"); ok {
			return n
		}
	}
	return 0
}

// keyedValue reads the value of key in a flat-keyed cgroup file ("key value" lines).
func keyedValue(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func readUint(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// storageStats returns the container's storage figures. On cgroup v2 they are
// io.stat's; cgroup v1 accounts block I/O only on throttled devices, so there
// they are the processes' own I/O accounting (/proc/<pid>/io, which includes
// the children each has reaped): bytes read from and written to storage, and
// the read and write calls made.
func storageStats(id string) (readOps, readBytes, writeOps, writeBytes uint64) {
	if isCgroup2() {
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", cgroupsPath(id), "io.stat"))
		for _, line := range strings.Split(string(b), "\n") {
			for _, f := range strings.Fields(line) {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					continue
				}
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "rbytes":
					readBytes += n
				case "wbytes":
					writeBytes += n
				case "rios":
					readOps += n
				case "wios":
					writeOps += n
				}
			}
		}
		return
	}
	b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cgroupsPath(id), "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		io := filepath.Join("/proc", f, "io")
		if v, ok := keyedColon(io); ok {
			readOps += v["syscr"]
			writeOps += v["syscw"]
			readBytes += v["read_bytes"]
			writeBytes += v["write_bytes"]
		}
	}
	return
}

// keyedColon reads a "key: value" file.
func keyedColon(path string) (map[string]uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			m[k] = n
		}
	}
	return m, true
}
