package attach

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/hostcompute/hostcompute/internal/state"
)

// Errors returned by this package, wrapped in an *Error.
var (
	// ErrAttached means the disk is attached already; the error names the
	// device. errors.Is also matches fs.ErrExist.
	ErrAttached = fmt.Errorf("attach: disk already attached: %w", fs.ErrExist)
	// ErrNotAttached means no attachment matches the device or disk given to
	// Detach or Get. errors.Is also matches fs.ErrNotExist.
	ErrNotAttached = fmt.Errorf("attach: not attached: %w", fs.ErrNotExist)
	// ErrBusy means the device is mounted or held by another device, or an
	// Attach of it is still in progress.
	ErrBusy = errors.New("attach: device busy")
)

// Error records a failed attach or detach.
type Error struct {
	Op     string // "attach", "detach", "cleanup", "get"
	Path   string // disk file, if known
	Device string // /dev/loopN, if known
	Err    error
}

func (e *Error) Error() string {
	s := "attach: " + e.Op
	if e.Path != "" {
		s += " " + e.Path
	}
	if e.Device != "" {
		s += " (" + e.Device + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Options controls Attach.
type Options struct {
	// ReadOnly attaches a read-only device; the disk file is opened read-only
	// and never modified.
	ReadOnly bool
	// Raw attaches the file as a raw image whatever it holds. Without it the
	// format is told from the content (see Detect), and a file that is neither
	// VHD, VHDX nor a recognised raw image is refused.
	Raw bool
}

// Attachment describes an attached disk. It is the JSON record kept in the
// state directory.
type Attachment struct {
	// Version is the schema version of the record, 1.
	Version int `json:"version"`
	// ID names the attachment (and its raw view's fusefs mount).
	ID string `json:"id"`
	// Disk is the absolute path of the disk file.
	Disk   string `json:"disk"`
	Format Format `json:"format"`
	// Size is the virtual size in bytes, the size of the device.
	Size     int64 `json:"size"`
	ReadOnly bool  `json:"readOnly,omitempty"`
	// Device is the loop device, /dev/loopN.
	Device string `json:"device,omitempty"`
	// BackingFile is the file the loop device is bound to: Disk, or the raw
	// view's file.
	BackingFile string `json:"backingFile,omitempty"`
	// BackingDev and BackingIno identify the backing file (st_dev, st_ino)
	// when the device was bound. The path the kernel shows for a backing file
	// changes when its mount is detached lazily (a raw view's file then shows
	// as "/disk"), so the device is matched by these, as the kernel reports
	// them in LOOP_GET_STATUS64.
	BackingDev uint64 `json:"backingDev,omitempty"`
	BackingIno uint64 `json:"backingIno,omitempty"`
	// RawView is set when the disk is served through a raw view.
	RawView bool `json:"rawView,omitempty"`
	// Complete is false while Attach is still working (or if it died).
	Complete bool      `json:"complete"`
	Created  time.Time `json:"created"`
}

const recordVersion = 1

// StateDir returns the directory of attachment records: attach/ under the
// state root (package internal/state).
func StateDir() string { return state.Dir(state.Attach) }
