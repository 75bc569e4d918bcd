package store

import (
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// unmountUnder unmounts everything mounted at or below dir, deepest first,
// lazily when busy.
func unmountUnder(dir string) error {
	ms, err := mountinfo.Read()
	if err != nil {
		return err
	}
	if len(mountinfo.Under(ms, dir)) == 0 {
		return nil
	}
	_, err = mount.UnmountAll(dir, true)
	return err
}
