package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/mount"
)

// Plan turns mounts, as Prepare and View return them, into a plan of the host
// engine's executor that mounts them at target: overlays one lower directory at
// a time through the new mount API (so their depth is not bound by mount(2)'s
// one-page option string), binds read-only from the start when asked.
func Plan(mounts []Mount, target string) (host.Plan, error) {
	var p host.Plan
	for _, m := range mounts {
		switch m.Type {
		case "overlay":
			o, err := ParseOverlay(m)
			if err != nil {
				return nil, err
			}
			p = append(p, mount.OverlayMount(target, o))
		case "bind":
			p = append(p, mount.BindMount(m.Source, target, slices.Contains(m.Options, "ro")))
		default:
			return nil, fmt.Errorf("%w: mount type %q", ErrUnsupported, m.Type)
		}
	}
	return p, nil
}

// MountAll performs mounts at target, an existing directory, through the host
// engine's executor and returns the undo that takes them down. On failure
// nothing stays mounted.
func MountAll(ctx context.Context, mounts []Mount, target string) (*host.Undo, error) {
	p, err := Plan(mounts, target)
	if err != nil {
		return nil, err
	}
	return host.Apply(ctx, p)
}

func joinLowers(ls []string) string { return strings.Join(ls, ":") }
