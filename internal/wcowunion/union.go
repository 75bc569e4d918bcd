package wcowunion

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// ReadTombstones returns the names a layer folder removes from its parents, as
// slash-separated paths relative to Files/, from its tombstones.txt (none when the
// file does not exist).
func ReadTombstones(layer string) ([]string, error) {
	p := filepath.Join(layer, winlayer.TombstonesFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseTombstones(f, p)
}

// MakeWhiteoutLayer makes dir holding an overlay whiteout (a 0/0 character device)
// for every name, with the directories above them.
func MakeWhiteoutLayer(dir string, names []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := mkWhiteout(p); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("whiteout %s: %w", n, err)
		}
	}
	return nil
}

// Layer is a read-only layer folder checked for a union.
type Layer struct {
	Path       string   // the layer folder
	Files      string   // its Files/ folder
	Tombstones []string // what it removes from its parents, relative to Files/
}

// LayerError names the layer folder a check failed on.
type LayerError struct {
	Path string
	Err  error
}

func (e *LayerError) Error() string { return "layer " + e.Path + ": " + e.Err.Error() }
func (e *LayerError) Unwrap() error { return e.Err }

// ErrNoFiles means a layer folder has no Files/ directory: it is missing or is
// not a layer. It matches fs.ErrNotExist.
var ErrNoFiles = fmt.Errorf("wcowunion: no %s folder: %w", winlayer.FilesDir, fs.ErrNotExist)

// Load checks the read-only layer folders (top-most first) and reads their
// tombstones. It also counts the lower directories their union needs: one per
// layer plus one per layer with deletions; more than mount.MaxLowerLayers gives an
// error matching mount.ErrTooManyLayers. Failures are *LayerError values.
func Load(folders []string) ([]Layer, error) {
	layers := make([]Layer, len(folders))
	n := 0
	for i, l := range folders {
		files := filepath.Join(l, winlayer.FilesDir)
		st, err := os.Stat(files)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = ErrNoFiles
			}
			return nil, &LayerError{Path: l, Err: err}
		}
		if !st.IsDir() {
			return nil, &LayerError{Path: l, Err: fmt.Errorf("%w: %s is not a directory", ErrNoFiles, files)}
		}
		tomb, err := ReadTombstones(l)
		if err != nil {
			return nil, &LayerError{Path: l, Err: err}
		}
		layers[i] = Layer{Path: l, Files: files, Tombstones: tomb}
		n++
		if len(tomb) > 0 {
			n++
		}
	}
	if n > mount.MaxLowerLayers {
		return nil, fmt.Errorf("%w: %d layers need %d lower directories (one more per layer with deletions), a union holds at most %d", mount.ErrTooManyLayers, len(folders), n, mount.MaxLowerLayers)
	}
	return layers, nil
}

// Lowers returns the overlay lower directories of layers, top-most first: each
// layer's Files/, followed, when it has tombstones, by a directory of whiteouts for
// them, made again under whiteouts/<i> (whatever was in whiteouts is removed first).
// whiteouts is usually Upper's sibling WhiteoutsDir.
func Lowers(layers []Layer, whiteouts string) ([]string, error) {
	if err := os.RemoveAll(whiteouts); err != nil {
		return nil, err
	}
	var lowers []string
	for i, l := range layers {
		lowers = append(lowers, l.Files)
		if len(l.Tombstones) == 0 {
			continue
		}
		d := filepath.Join(whiteouts, strconv.Itoa(i))
		if err := MakeWhiteoutLayer(d, l.Tombstones); err != nil {
			return nil, &LayerError{Path: l.Path, Err: fmt.Errorf("making whiteouts: %w", err)}
		}
		lowers = append(lowers, d)
	}
	return lowers, nil
}

// Names under the base of a union's writable layer (the scratch folder, or the
// mounted scratch volume): Files/ is the upper directory.
const (
	// WorkDir is overlayfs's work directory, beside the writable Files/.
	WorkDir = ".overlay-work"
	// WhiteoutsDir holds, per read-only layer with tombstones, its deletions as
	// overlay whiteouts. It is made again at every mount.
	WhiteoutsDir = ".overlay-whiteouts"
)
