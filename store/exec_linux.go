package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hostcompute/hostcompute/internal/mount"
)

// MountAll performs mounts, as Prepare and View return them, at target, an
// existing directory. Overlays are mounted with the new mount API, one lower
// directory at a time, so their length is not bound by mount(2)'s one-page
// option string. On failure nothing stays mounted.
func MountAll(mounts []Mount, target string) error {
	for i, m := range mounts {
		var err error
		switch m.Type {
		case "overlay":
			var o mount.Overlay
			if o, err = ParseOverlay(m); err == nil {
				err = mount.MountOverlay(target, o)
			}
		case "bind":
			if slices.Contains(m.Options, "ro") {
				err = mount.MountOverlay(target, mount.Overlay{Lower: []string{m.Source}})
			} else {
				err = mount.Bind(m.Source, target)
			}
		default:
			err = fmt.Errorf("%w: mount type %q", ErrUnsupported, m.Type)
		}
		if err != nil {
			for range i {
				_ = mount.Unmount(target)
			}
			return err
		}
	}
	return nil
}

// UnmountAll unmounts everything mounted at target and below.
func UnmountAll(target string) error {
	_, err := mount.UnmountAll(target, false)
	return err
}

func joinLowers(ls []string) string { return strings.Join(ls, ":") }
