package fusefs

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/hostcompute/hostcompute/internal/state"
)

// Errors returned by this package, wrapped in an *Error.
var (
	// ErrUnknownKind means no file system kind of that name is registered in
	// the binary.
	ErrUnknownKind = errors.New("fusefs: unknown file system kind")
	// ErrNotFound means no mount with that ID exists. errors.Is also matches
	// fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("fusefs: no such mount: %w", fs.ErrNotExist)
	// ErrBusy means the file system is still in use (open files, a loop device
	// over one of its files) and cannot be unmounted.
	ErrBusy = errors.New("fusefs: mount busy")
	// ErrHelper means the helper process failed to open the source or to
	// mount; the error text includes what it reported.
	ErrHelper = errors.New("fusefs: helper failed")
	// ErrInvalidID means an ID with characters other than letters, digits,
	// '.', '_' and '-' (or empty, or longer than 64 bytes).
	ErrInvalidID = errors.New("fusefs: invalid mount ID")
)

// Error records a failed operation on a FUSE mount.
type Error struct {
	Op   string // "mount", "unmount", "list", "cleanup", "serve"
	ID   string // mount ID, if known
	Path string // mount point or source, if known
	Err  error
}

func (e *Error) Error() string {
	s := "fusefs: " + e.Op
	if e.ID != "" {
		s += " " + e.ID
	}
	if e.Path != "" {
		s += " (" + e.Path + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Request describes a file system to mount. It is passed to the helper process
// as JSON, so every field must survive encoding/json.
type Request struct {
	// ID names the mount; empty means a random one. It is the name of the state
	// directory and part of the mount's source in mountinfo.
	ID string `json:"id"`
	// Kind selects the registered OpenFunc.
	Kind string `json:"kind"`
	// Source is what the kind serves, usually a file path. Relative paths are
	// made absolute by Mount.
	Source string `json:"source,omitempty"`
	// Mountpoint is an existing directory; empty means StateDir()/<id>/mnt.
	Mountpoint string `json:"mountpoint,omitempty"`
	// ReadOnly mounts read-only (MS_RDONLY) and is passed to the kind.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Params carries kind-specific settings.
	Params map[string]string `json:"params,omitempty"`
}

// Record describes a running mount. It is stored as StateDir()/<id>/record.json.
type Record struct {
	// Version is the schema version of the record, 1.
	Version    int               `json:"version"`
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Source     string            `json:"source,omitempty"`
	Mountpoint string            `json:"mountpoint"`
	ReadOnly   bool              `json:"readOnly,omitempty"`
	Params     map[string]string `json:"params,omitempty"`
	// PID is the helper process.
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// recordVersion is the schema version written to new records.
const recordVersion = 1

// Environment variables.
const (
	// envHelper carries the JSON Request to a helper process; its presence is
	// what makes MaybeRunHelper serve.
	envHelper = "HOSTCOMPUTE_FUSEFS_HELPER"
)

// StateDir returns the directory holding one subdirectory per mount: fuse/
// under the state root (package internal/state).
func StateDir() string { return state.Dir(state.FUSE) }

// validID reports whether id is 1 to 64 letters, digits, '.', '_' or '-', and
// not "." or "..". A loop, not a regular expression compiled at start-up: every
// hcs process, each container monitor included, would pay for it.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Names in the kernel's mount table.
const (
	fsTypeName   = "hostcompute"                   // fuse.<Name> is the fstype
	sourcePrefix = "hostcompute:"                  // followed by the ID
	fsType       = "fuse." + fsTypeName            // as mountinfo shows it
	recordFile   = "record.json"                   // in the state directory
	lockFile     = "lock"                          // flock'd by the helper
	logFile      = "helper.log"                    // helper's stdout and stderr
	mountDir     = "mnt"                           // default mount point
	readyMessage = "ready"                         // helper to caller on success
	helperFailed = "fusefs helper failed to start" // when the helper says nothing
)
