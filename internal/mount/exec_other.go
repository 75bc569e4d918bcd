//go:build !linux

package mount

import (
	"context"
)

// Apply validates plan and returns an error matching errors.ErrUnsupported:
// mounts are Linux's.
func (e *Executor) Apply(ctx context.Context, plan Plan) (*Undo, error) {
	if err := e.Validate(plan); err != nil {
		return nil, err
	}
	target := ""
	if len(plan) > 0 {
		target = plan[0].Target
	}
	return nil, unsupported("apply", target)
}

// UnmountDetach returns an error matching errors.ErrUnsupported.
func UnmountDetach(target string) error { return unsupported("lazy unmount", target) }

// WaitCleared returns an error matching errors.ErrUnsupported.
func WaitCleared(dev, backing string) error { return unsupported("wait for loop device", dev) }
