package compute

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/hostcompute/hostcompute/internal/state"
)

// StateDir returns the directory of container state: compute/ under the host
// engine's one state root (/run/hostcompute, or $HOSTCOMPUTE_STATE_DIR), unless
// $HOSTCOMPUTE_COMPUTE_STATE_DIR names another directory (as hns's own variable
// does for networks).
func StateDir() string {
	if d := os.Getenv("HOSTCOMPUTE_COMPUTE_STATE_DIR"); d != "" {
		return d
	}
	return state.Dir("compute")
}

// Errors, wrapped in an *Error naming the container and operation.
var (
	// ErrNotFound: no container (or process) with that ID exists.
	ErrNotFound = fmt.Errorf("compute: not found: %w", fs.ErrNotExist)
	// ErrExists: a container with that ID exists already.
	ErrExists = fmt.Errorf("compute: already exists: %w", fs.ErrExist)
	// ErrStopped: the container or process has stopped already.
	ErrStopped = errors.New("compute: already stopped")
	// ErrInvalidState: the container is not in a state that allows the operation
	// (a second Start, an Exec before Start, Pause of a stopped container).
	ErrInvalidState = errors.New("compute: invalid state for the operation")
	// ErrInvalidArgument: a parameter is missing or wrong.
	ErrInvalidArgument = errors.New("compute: invalid argument")
	// ErrTimeout: a wait timed out.
	ErrTimeout = errors.New("compute: timeout")
	// ErrMonitorLost: the container's monitor died; its container has been
	// cleaned up.
	ErrMonitorLost = errors.New("compute: the container's monitor is gone")
	// ErrUnsupported: a configuration this host cannot realize (Hyper-V
	// isolation, a utility VM). It matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("compute: unsupported: %w", errors.ErrUnsupported)
	// ErrNoConsole: the process has no terminal to resize.
	ErrNoConsole = errors.New("compute: the process has no console")
)

// Error records a failed operation on a container.
type Error struct {
	ID  string // the container
	Op  string // "create", "start", "exec", ...
	Err error
}

func (e *Error) Error() string { return "compute: " + e.Op + " " + e.ID + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Layer is a read-only layer of a container's root: an ext4 layer image (a
// file, or a folder holding layer.vhd), a directory tree, or a Windows layer
// folder whose Files/ holds the tree.
type Layer struct {
	ID   string
	Path string
}

// Mount maps a host directory (or a file, such as a resolv.conf) into the
// container: a recursive bind mount.
type Mount struct {
	Source      string // host path
	Destination string // path inside the container
	ReadOnly    bool
}

// Resources are the container's limits; zero means no limit.
type Resources struct {
	CPUCount         uint32 // processors the container may run on (the first N)
	CPUWeight        uint64 // relative weight 1..10000 (cgroup v1 shares 2..262144, v2 weight 1..10000)
	CPUMaximum       int64  // percent 1..100 of the host's total processor time
	MemoryBytes      int64  // memory limit, swap included
	IOPSMaximum      uint64 // read and write operations per second on the scratch's disk
	BandwidthMaximum uint64 // read and write bytes per second on the scratch's disk
}

// Config describes a container.
type Config struct {
	ID string
	// Scratch is the writable layer's folder (hcsshim's LayerFolderPath): with ext4
	// layer images it holds sandbox.vhdx (made when missing), with directory layers
	// the overlay's upper/ and work/.
	Scratch string
	// ScratchSize is the size of a new sandbox.vhdx, and the size an existing one
	// is grown to when smaller (0: the default size).
	ScratchSize uint64
	// Layers are the read-only layers, the top-most first.
	Layers   []Layer
	Hostname string
	Mounts   []Mount
	Resources
	// NetNS is the network namespace to join (a path such as /var/run/netns/X);
	// empty gives the container a namespace of its own with loopback only.
	NetNS string
	// Endpoints name the network endpoints whose namespace the container joins;
	// they are recorded for statistics.
	Endpoints []string
}

// ValidID reports whether id can name a container: 1 to 128 letters, digits,
// '_', '.', '-', not starting with a punctuation character (runc's own rule,
// stricter by the length). A loop, not a regular expression: compiling
// [..]{0,127} costs every start of the binary (each monitor too) a millisecond.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ProcessSpec describes a process to run in a container.
type ProcessSpec struct {
	Args []string // Args[0] is looked up in the container's PATH
	Env  []string // KEY=value; PATH is added when missing
	Cwd  string   // default "/"
	// Terminal gives the process a pseudo-terminal: Process.Console is its master.
	Terminal                    bool
	ConsoleWidth, ConsoleHeight uint16
	// Stdin, Stdout and Stderr are given to the process as they are (without a
	// terminal); nil is /dev/null. The caller keeps its own copies.
	Stdin, Stdout, Stderr *os.File
}

// Exit is how a process ended.
type Exit struct {
	Pid    int       `json:"pid"`
	Code   int       `json:"exitCode"`         // the exit status, or 128+signal
	Signal int       `json:"signal,omitempty"` // the signal that killed it
	OOM    bool      `json:"oomKilled,omitempty"`
	Time   time.Time `json:"time"`
	// Lost: the process was gone when its container stopped without its exit
	// being seen (the monitor was killed, say); Code is then 137.
	Lost bool `json:"lost,omitempty"`
}

// ErrOOMKilled is reported by Wait when the kernel's OOM killer ended the
// process (the container's memory limit was reached).
var ErrOOMKilled = errors.New("compute: killed by the out-of-memory killer (memory limit reached)")

// Status of a container.
type Status string

const (
	StatusCreated Status = "created" // made, no process started yet
	StatusRunning Status = "running"
	StatusPaused  Status = "paused"
	StatusStopped Status = "stopped"
)

// Info describes a container.
type Info struct {
	ID      string     `json:"id"`
	Status  Status     `json:"status"`
	InitPid int        `json:"initPid,omitempty"`
	Created time.Time  `json:"created"`
	Started time.Time  `json:"started,omitzero"`
	Rootfs  string     `json:"rootfs"`
	Bundle  string     `json:"bundle"`
	Exit    *Exit      `json:"exit,omitempty"`
	Config  Config     `json:"config"`
	Procs   []ProcInfo `json:"processes,omitempty"`
}

// ProcInfo describes a process of a container.
type ProcInfo struct {
	Pid      int       `json:"pid"`
	Args     []string  `json:"args"`
	Init     bool      `json:"init,omitempty"`
	Terminal bool      `json:"terminal,omitempty"`
	Started  time.Time `json:"started"`
	Exit     *Exit     `json:"exit,omitempty"`
}
