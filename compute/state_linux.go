package compute

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
)

// Names in a container's state directory.
const (
	recordFile   = "container.json"
	lockFile     = "lock"
	monitorLock  = "monitor.lock"
	monitorPid   = "monitor.pid"
	monitorLog   = "monitor.log"
	stoppedFile  = "stopped.json"
	bundleDir    = "bundle"
	rootDir      = "root"
	procsDir     = "procs"
	runcLog      = "runc.log"
	runcStateDir = "runc" // under StateDir(): runc --root
)

// record is container.json.
type record struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Phase   string    `json:"phase"` // "creating" until Create has finished, then "created"
	Created time.Time `json:"created"`
	Config  Config    `json:"config"`
	Rootfs  string    `json:"rootfs"`
	// RootKind says how the root was made: "lcow" (ext4 layer images and a
	// scratch disk), "overlay" (directory layers), "layermount" (a Windows
	// scratch layer folder prepared here).
	RootKind string `json:"rootKind"`
	// Activations is layermount's activation count of the scratch before this
	// container activated it (kind "layermount").
	Activations int `json:"activationsBefore,omitempty"`
}

const recordVersion = 1

func containerDir(id string) string { return filepath.Join(StateDir(), id) }
func runcRoot() string              { return filepath.Join(StateDir(), runcStateDir) }

// writeAtomic writes data to path through the one atomic-write helper: a reader
// sees the old content or the new, never part.
func writeAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o600)
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeAtomic(path, append(data, '\n'))
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func readRecord(dir string) (*record, error) {
	var r record
	if err := readJSON(filepath.Join(dir, recordFile), &r); err != nil {
		return nil, err
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("%s: record version %d, want %d", filepath.Join(dir, recordFile), r.Version, recordVersion)
	}
	return &r, nil
}

// flock takes an flock on path (created when missing) and returns its file;
// closing the file releases it. With nonBlock, a lock held elsewhere gives
// unix.EWOULDBLOCK.
func flock(path string, how int, nonBlock bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if nonBlock {
		how |= unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// monitorAlive reports whether the container's monitor holds its lock.
func monitorAlive(dir string) bool {
	f, err := flock(filepath.Join(dir, monitorLock), unix.LOCK_SH, true)
	if err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	f.Close()
	return false
}

// readPid reads a pid file.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a pid: %q", path, b)
	}
	return pid, nil
}

// procRecord is procs/<pid>.json: a process started by the monitor.
type procRecord struct {
	Pid      int       `json:"pid"`
	Args     []string  `json:"args"`
	Init     bool      `json:"init,omitempty"`
	Terminal bool      `json:"terminal,omitempty"`
	Started  time.Time `json:"started"`
}

func procPath(dir string, pid int) string {
	return filepath.Join(dir, procsDir, strconv.Itoa(pid)+".json")
}
func exitPath(dir string, pid int) string {
	return filepath.Join(dir, procsDir, strconv.Itoa(pid)+".exit.json")
}

func readExit(dir string, pid int) (*Exit, error) {
	var e Exit
	if err := readJSON(exitPath(dir, pid), &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// stopRecord is stopped.json, written by the monitor once the container has
// stopped and everything it held is released.
type stopRecord struct {
	Time     time.Time `json:"time"`
	InitExit *Exit     `json:"initExit,omitempty"`
	// Errors met while releasing (they are also in monitor.log).
	CleanupErrors []string `json:"cleanupErrors,omitempty"`
}

func readStopped(dir string) (*stopRecord, error) {
	var s stopRecord
	if err := readJSON(filepath.Join(dir, stoppedFile), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// socketName is the monitor's abstract socket address: abstract names vanish
// with their process and are not bound by the path length limit.
func socketName(dir string) string {
	abs, _ := filepath.Abs(dir)
	sum := sha256.Sum256([]byte(abs))
	return "@hostcompute-compute-" + hex.EncodeToString(sum[:12])
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// endMonitor makes sure the monitor of the container in dir, whose pid file
// says pid, is gone: it is given grace to end by itself, then killed. Its end
// is awaited through a pidfd (poll wakes at its exit), not by polling its lock.
func endMonitor(dir string, pid int, grace time.Duration) {
	if pid == os.Getpid() {
		// A monitor in this process (InProcessMonitor): never a signal.
		endLocalMonitor(dir, grace)
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		// No pidfds (a kernel before 5.3): poll the lock.
		if monitorAlive(dir) {
			unix.Kill(pid, unix.SIGKILL)
		}
		for i := 0; i < 500 && monitorAlive(dir); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		return
	}
	defer unix.Close(fd)
	// The pid is the monitor's only while the monitor holds its lock (pids
	// are reused): checked after the pidfd pinned the process.
	if !monitorAlive(dir) {
		return
	}
	if grace > 0 && pollExit(fd, grace) {
		return
	}
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	pollExit(fd, 5*time.Second)
}

// pollExit waits up to d for the process of pidfd fd to exit.
func pollExit(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}
