package layers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// WCOWWhiteoutsDir holds, under the writable layer's base, one directory per read-only
// layer with tombstones: the layer's deletions as overlay whiteouts. It is made again
// at every MountWCOWLayers.
const WCOWWhiteoutsDir = ".overlay-whiteouts"

// readTombstones returns the names a layer folder removes from its parents, as
// slash-separated paths relative to Files/, from its tombstones.txt (none when the
// file does not exist).
func readTombstones(layer string) ([]string, error) {
	p := filepath.Join(layer, winlayer.TombstonesFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseTombstones(f, p)
}

// makeWhiteoutLayer makes dir holding an overlay whiteout (a 0/0 character device)
// for every name, with the directories above them.
func makeWhiteoutLayer(dir string, names []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("whiteout %s: %w", n, err)
		}
	}
	return nil
}
