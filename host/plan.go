package host

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/cimview"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mount"
)

// Mount is one step of a plan: a serialized mount(2), or the attachment of a
// disk, or the making of a mount point. See the type documentation of
// internal/mount for the built-in types; the host engine adds TypeDisk and
// TypeCIM.
type Mount = mount.Mount

// Plan is a list of steps, applied in order and undone in reverse.
type Plan = mount.Plan

// Undo undoes an applied plan: its Release takes down, last step first,
// everything the plan made. It is the closer the layer-stack functions
// return.
type Undo = mount.Undo

// Overlay describes an overlayfs union for OverlayMount.
type Overlay = mount.Overlay

// Step types of the host engine, beyond the built-in ones of the executor
// (mount.TypeMkdir, TypeLoop, TypeFormat, TypeExt4, TypeNTFS, TypeAuto,
// TypeOverlay, TypeBind).
const (
	// TypeDisk attaches the disk file Source (any format: raw, VHD, VHDX)
	// as a block device, named by Target ("@name"), through
	// internal/attach: a loop device, with a FUSE raw view underneath for
	// formats a loop device cannot read. The attachment is recorded and
	// outlives the process. Options: "ro"; "shared": use an attachment of
	// the disk that exists already when its mode fits (read-only ones are
	// shared by every stack; a writable one only when nothing mounts it),
	// and end it at the undo only when no mount uses it any more.
	TypeDisk = "disk"
	// TypeCIM mounts the CIM file Source read-only at Target through a FUSE
	// view served by a helper process. Options: "id=ID" names the FUSE
	// mount (internal/fusefs); "container=ID" is recorded with it.
	TypeCIM = "cim"
)

// Re-exported step builders.
var (
	MkdirStep       = mount.MkdirStep
	FilesystemMount = mount.FilesystemMount
	OverlayMount    = mount.OverlayMount
	BindMount       = mount.BindMount
	FormatStep      = mount.FormatStep
)

// DiskStep attaches disk as the device name ("@name" in later steps).
func DiskStep(disk, name string, readOnly, shared bool) Mount {
	m := Mount{Type: TypeDisk, Source: disk, Target: "@" + name}
	if readOnly {
		m.Options = append(m.Options, "ro")
	}
	if shared {
		m.Options = append(m.Options, "shared")
	}
	return m
}

// CIMStep mounts the CIM cim at target as the FUSE mount id.
func CIMStep(cim, target, id, containerID string) Mount {
	m := Mount{Type: TypeCIM, Source: cim, Target: target, Options: []string{"id=" + id}}
	if containerID != "" {
		m.Options = append(m.Options, "container="+containerID)
	}
	return m
}

// testHook, when set by a test, runs before every step of every plan the
// engine applies; an error fails that step.
var testHook func(m Mount) error

// executor returns the one executor, with the engine's step types.
func executor() *mount.Executor {
	return &mount.Executor{
		Handlers: map[string]mount.Handler{TypeDisk: diskStep, TypeCIM: cimStep},
		Hook:     testHook,
	}
}

// Apply applies plan through the one executor and returns its undo. On
// failure nothing of the plan is left.
func Apply(ctx context.Context, plan Plan) (*Undo, error) {
	return executor().Apply(ctx, plan)
}

// ValidatePlan checks plan without doing anything.
func ValidatePlan(plan Plan) error { return executor().Validate(plan) }

func hasOption(m Mount, o string) bool {
	for _, x := range m.Options {
		if x == o {
			return true
		}
	}
	return false
}

func optionValue(m Mount, key string) string {
	for _, x := range m.Options {
		if v, ok := strings.CutPrefix(x, key+"="); ok {
			return v
		}
	}
	return ""
}

// diskStep runs a TypeDisk step.
func diskStep(ctx context.Context, m Mount) (mount.Result, error) {
	ro, shared := hasOption(m, "ro"), hasOption(m, "shared")
	if !shared {
		a, err := attach.Attach(ctx, m.Source, attach.Options{ReadOnly: ro})
		if err != nil {
			return mount.Result{}, err
		}
		return mount.Result{Device: a.Device, Undo: func(ctx context.Context) error {
			err := attach.Detach(ctx, a.Device)
			if errors.Is(err, attach.ErrNotAttached) {
				return nil
			}
			return err
		}}, nil
	}
	a, err := sharedAttachment(ctx, m.Source, ro)
	if err != nil {
		return mount.Result{}, err
	}
	return mount.Result{Device: a.Device, Undo: func(ctx context.Context) error { return releaseShared(ctx, a) }}, nil
}

// sharedAttachment attaches file, or uses its attachment when it exists: a
// read-only attachment is shared (another stack's layer), and one that no
// mount uses (left by a crashed call) is reused when its mode fits and ended
// otherwise. An attachment mounted elsewhere in the other mode is refused
// with ErrAlreadyMounted.
func sharedAttachment(ctx context.Context, file string, readOnly bool) (*attach.Attachment, error) {
	if a, err := attach.Get(file); err == nil {
		mps, err := attach.MountPoints(a)
		if err != nil {
			return nil, err
		}
		switch {
		case a.ReadOnly == readOnly && (readOnly || len(mps) == 0):
			return a, nil
		case len(mps) > 0:
			return nil, fmt.Errorf("%w: %s is attached as %s (read-only %v) and mounted at %s", ErrAlreadyMounted, file, a.Device, a.ReadOnly, strings.Join(mps, ", "))
		}
		if err := attach.Detach(ctx, a.Device); err != nil && !errors.Is(err, attach.ErrNotAttached) {
			return nil, err
		}
	}
	return attach.Attach(ctx, file, attach.Options{ReadOnly: readOnly})
}

// releaseShared ends the attachment a once no mount uses it; while another
// stack still has it mounted, that stack's release ends it.
func releaseShared(ctx context.Context, a *attach.Attachment) error {
	if mps, err := attach.MountPoints(a); err == nil && len(mps) > 0 {
		return nil
	}
	err := attach.Detach(ctx, a.Device)
	if errors.Is(err, attach.ErrNotAttached) || errors.Is(err, attach.ErrBusy) {
		// Ended by another stack already, or mounted again by one since the
		// check: that one ends it.
		return nil
	}
	return err
}

// cimStep runs a TypeCIM step.
func cimStep(ctx context.Context, m Mount) (mount.Result, error) {
	req := fusefs.Request{ID: optionValue(m, "id"), Kind: cimview.Kind, Source: m.Source, Mountpoint: m.Target, ReadOnly: true}
	if c := optionValue(m, "container"); c != "" {
		req.Params = map[string]string{"containerID": c}
	}
	rec, err := fusefs.Mount(ctx, req)
	if err != nil {
		return mount.Result{}, err
	}
	return mount.Result{Undo: func(ctx context.Context) error {
		err := fusefs.Unmount(ctx, rec.ID)
		if errors.Is(err, fusefs.ErrNotFound) {
			return nil
		}
		return err
	}}, nil
}

// MaybeRunHelper serves a FUSE view (a disk's raw view, a CIM) and exits if
// this process was started as one of the engine's helper processes;
// otherwise it returns at once. Call it first in main, and in TestMain, of
// every program that attaches VHD or VHDX disks or mounts CIMs.
func MaybeRunHelper() { fusefs.MaybeRunHelper() }
