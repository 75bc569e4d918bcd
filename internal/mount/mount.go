package mount

import (
	"errors"
	"fmt"
)

// MaxLowerLayers is the largest number of lower layers one overlay union can have:
// the kernel's OVL_MAX_STACK.
const MaxLowerLayers = 500

// Errors returned by this package, wrapped in an *Error. Errors caused by the
// kernel also wrap the errno, so errors.Is(err, unix.EBUSY) and the like work.
var (
	// ErrTooManyLayers means an overlay was asked for more than MaxLowerLayers
	// lower layers. Nothing was mounted.
	ErrTooManyLayers = errors.New("mount: too many overlay lower layers")

	// ErrBusy means an unmount found the file system in use (EBUSY).
	ErrBusy = errors.New("mount: busy")

	// ErrNotMounted means an unmount found nothing mounted at the target (EINVAL).
	ErrNotMounted = errors.New("mount: not a mount point")
)

// Overlay describes an overlayfs union.
type Overlay struct {
	// Lower are the read-only layers, topmost first: a file in Lower[0] hides the
	// same name in Lower[1] and below. At least one, at most MaxLowerLayers.
	Lower []string
	// Upper and Work are the writable layer and overlayfs's work directory, on the
	// same file system. Both empty makes a read-only union.
	Upper, Work string
	// Source is shown as the mount source in mountinfo; empty means "overlay". Name
	// the owner here so that a later process can find its unions.
	Source string
}

// source is the union's mount source: Source, or "overlay".
func (o *Overlay) source() string {
	if o.Source == "" {
		return "overlay"
	}
	return o.Source
}

// Error records a failed mount or unmount.
type Error struct {
	Op     string // "mount overlay", "mount ext4", "unmount", ...
	Target string // mount point
	Source string // device or lower layer concerned, if any
	Detail string // the kernel's messages from the file system context, if any
	Err    error
}

func (e *Error) Error() string {
	s := "mount: " + e.Op + " " + e.Target
	if e.Source != "" {
		s += " (" + e.Source + ")"
	}
	s += ": " + e.Err.Error()
	if e.Detail != "" {
		s += " [kernel: " + e.Detail + "]"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func tooMany(target string, n int) error {
	return &Error{Op: "mount overlay", Target: target,
		Err: fmt.Errorf("%w: %d lower layers, the kernel allows %d (flatten some layers first)", ErrTooManyLayers, n, MaxLowerLayers)}
}

// validate checks what the kernel would refuse less clearly.
func (o *Overlay) validate(target string) error {
	return o.validateShape(target, len(o.Lower))
}

// validateShape is validate for a union of lowers lower layers (o.Lower unused).
func (o *Overlay) validateShape(target string, lowers int) error {
	if lowers == 0 {
		return &Error{Op: "mount overlay", Target: target, Err: errors.New("no lower layer")}
	}
	if lowers > MaxLowerLayers {
		return tooMany(target, lowers)
	}
	if (o.Upper == "") != (o.Work == "") {
		return &Error{Op: "mount overlay", Target: target, Err: errors.New("upper and work directories go together: give both or neither")}
	}
	return nil
}
