package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/wcowunion"
)

// upperDir is where an active layer's changes go (and where a committed layer's
// content is): fs for the directory formats, upper for an active Windows layer,
// whose committed form is a layer folder.
func (s *Store) upperDir(r *record) string {
	if r.Format == FormatWindowsFolder && r.Kind == KindActive {
		return filepath.Join(s.layerDir(r.ID), "upper")
	}
	return filepath.Join(s.layerDir(r.ID), "fs")
}

// plan returns the mounts of the active layer or view r over parents (their IDs,
// immediate parent first), in the shapes containerd's overlay snapshotter uses:
//
//   - an active layer without parents: a read-write bind mount of its directory;
//   - an active layer with parents: an overlay with the parents as lowerdir
//     (topmost first), its directory as upperdir and its work directory;
//   - a view without parents: a read-only bind mount of its (empty) directory;
//   - a view of one lower directory: a read-only bind mount of it;
//   - a view of several: a read-only overlay of them.
//
// Windows layer folders are unioned through their Files/ folders, each
// followed, when the layer removes files of its parents, by a directory of
// whiteouts made from its tombstones at Prepare or View.
func (s *Store) plan(r *record, parents []uint64) ([]Mount, error) {
	var lowers []string
	switch r.Format {
	case FormatLinuxDir:
		lowers = parentPaths(s, parents)
	case FormatWindowsFolder:
		var err error
		lowers, err = windowsLowers(parentPaths(s, parents), filepath.Join(s.layerDir(r.ID), "whiteouts"), false)
		if err != nil {
			return nil, err
		}
	default:
		return nil, classf(ErrUnsupported, "mounts of %s layers are not supported", r.Format)
	}
	if len(lowers) > mount.MaxLowerLayers {
		return nil, classf(ErrFailedPrecondition, "%d lower directories, overlayfs stacks at most %d: %v", len(lowers), mount.MaxLowerLayers, mount.ErrTooManyLayers)
	}
	if r.Kind == KindActive {
		upper := s.upperDir(r)
		if len(lowers) == 0 {
			return []Mount{{Type: "bind", Source: upper, Options: []string{"rw", "rbind"}}}, nil
		}
		return []Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"workdir=" + filepath.Join(s.layerDir(r.ID), "work"),
			"upperdir=" + upper,
			"lowerdir=" + strings.Join(lowers, ":"),
		}}}, nil
	}
	switch len(lowers) {
	case 0:
		return []Mount{{Type: "bind", Source: filepath.Join(s.layerDir(r.ID), "fs"), Options: []string{"ro", "rbind"}}}, nil
	case 1:
		return []Mount{{Type: "bind", Source: lowers[0], Options: []string{"ro", "rbind"}}}, nil
	}
	return []Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(lowers, ":")}}}, nil
}

// windowsLowers returns the lower directories of a union of the Windows layer
// folders (topmost first): each one's Files/, then, when it has tombstones,
// whiteouts/<i>. With make, the whiteout directories are (re)made.
func windowsLowers(folders []string, whiteouts string, make bool) ([]string, error) {
	ls, err := wcowunion.Load(folders)
	if err != nil {
		return nil, err
	}
	if make {
		return wcowunion.Lowers(ls, whiteouts)
	}
	var lowers []string
	for i, l := range ls {
		lowers = append(lowers, l.Files)
		if len(l.Tombstones) > 0 {
			lowers = append(lowers, filepath.Join(whiteouts, strconv.Itoa(i)))
		}
	}
	return lowers, nil
}

// ParseOverlay reads the lower, upper and work directories from the options of
// an overlay Mount as plan writes them.
func ParseOverlay(m Mount) (mount.Overlay, error) {
	if m.Type != "overlay" {
		return mount.Overlay{}, fmt.Errorf("%w: mount type %q is not overlay", ErrInvalidArgument, m.Type)
	}
	var o mount.Overlay
	for _, opt := range m.Options {
		k, v, _ := strings.Cut(opt, "=")
		switch k {
		case "lowerdir":
			o.Lower = strings.Split(v, ":")
		case "upperdir":
			o.Upper = v
		case "workdir":
			o.Work = v
		}
	}
	if len(o.Lower) == 0 {
		return o, errors.New("store: overlay mount without lowerdir")
	}
	return o, nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
