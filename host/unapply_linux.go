package host

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// Unapply takes down what plan made, from the plan alone and the kernel's
// tables, last step first: for a process other than the one that applied it
// (the Undo is gone with that process), or after a crash. Mounts still at
// their targets are unmounted (a busy one gives an error matching ErrBusy
// and stops there; Unapply may be called again), CIM views ended, loop
// devices bound to a loop step's file and unused detached, a disk step's
// attachment ended when nothing mounts it, and the directory of each mkdir
// step removed when empty (not the parents it made: name those in steps of
// their own). Steps that left nothing are skipped, so
// Unapply of a plan half applied, or already undone, is not an error.
func Unapply(ctx context.Context, plan Plan) error {
	if err := ValidatePlan(plan); err != nil {
		return err
	}
	for i := len(plan) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := unapplyStep(ctx, plan[i]); err != nil {
			return &Error{Op: "unapply " + plan[i].Type, Path: firstNonEmpty(plan[i].Target, plan[i].Source), Err: err}
		}
	}
	return nil
}

func firstNonEmpty(a, b string) string {
	if a != "" && !strings.HasPrefix(a, "@") {
		return a
	}
	return b
}

func unapplyStep(ctx context.Context, m Mount) error {
	switch m.Type {
	case mount.TypeMkdir:
		if hasOption(m, "keep") {
			return nil
		}
		err := os.Remove(m.Target)
		if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) || isNotEmpty(err) {
			return nil
		}
		return err
	case mount.TypeFormat:
		return nil
	case TypeCIM:
		if id := optionValue(m, "id"); id != "" {
			err := fusefs.Unmount(ctx, id)
			if err == nil || errors.Is(err, fusefs.ErrNotFound) {
				return nil
			}
			return err
		}
		return unmountTarget(m.Target)
	case mount.TypeLoop:
		devs, err := mount.LoopDevices(m.Source)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if mounted, err := deviceMounted(d); err != nil || mounted {
				continue // another stack's, or still mounted: left alone
			}
			if err := mount.DetachLoop(d); err != nil {
				return err
			}
		}
		return nil
	case TypeDisk:
		a, err := attach.Get(m.Source)
		if errors.Is(err, attach.ErrNotAttached) {
			return nil
		}
		if err != nil {
			return err
		}
		return releaseShared(ctx, a)
	}
	return unmountTarget(m.Target)
}

// unmountTarget unmounts the topmost mount at target, if there is one.
func unmountTarget(target string) error {
	ms, err := mountinfo.Lookup(target)
	if err != nil || len(ms) == 0 {
		return err
	}
	err = mount.Unmount(target)
	if errors.Is(err, mount.ErrNotMounted) {
		return nil
	}
	return err
}

// deviceMounted reports whether the block device dev is mounted anywhere.
func deviceMounted(dev string) (bool, error) {
	a := &attach.Attachment{Device: dev}
	mps, err := attach.MountPoints(a)
	return len(mps) > 0, err
}

func isNotEmpty(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not empty")
}
