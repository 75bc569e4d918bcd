package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/store"
)

// Layer store labels set on the layers a pull unpacks.
const (
	// LabelDiffID is the layer's uncompressed digest, as containerd's unpacker
	// labels its snapshots.
	LabelDiffID = "containerd.io/uncompressed"
)

// StoreLayers unpacks images into the engine's layer store: each layer is the
// committed store layer keyed by its chainID, Windows layers as layer folders
// (lossless, pkg/ociwclayer), Linux layers applied over their parents
// (pkg/ocilayer).
func StoreLayers(s *store.Store) Layers { return storeLayers{s} }

type storeLayers struct{ s *store.Store }

func (l storeLayers) HasLayer(ctx context.Context, key string) (bool, error) {
	info, err := l.s.Stat(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.Kind == store.KindCommitted, nil
}

func (l storeLayers) ImportLayer(ctx context.Context, key, parent, osName, diffID string, r io.Reader) error {
	format := store.FormatLinuxDir
	if osName == "windows" {
		format = store.FormatWindowsFolder
	}
	_, err := l.s.Import(ctx, key, parent, r, store.WithFormat(format), store.WithDiffID(diffID),
		store.WithLabels(map[string]string{LabelDiffID: diffID}))
	if errors.Is(err, store.ErrInvalidArgument) && strings.Contains(err.Error(), "diff ID") {
		// The store hashed the tar and refused it before anything was visible.
		return fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	return err
}

// ChecksDiffID says that ImportLayer itself refuses a tar whose digest is not
// diffID (the store hashes what it imports), so the puller need not hash it again.
func (storeLayers) ChecksDiffID() bool { return true }

func (l storeLayers) ExportLayer(ctx context.Context, key string, w io.Writer) error {
	return l.s.Export(ctx, w, key)
}

func (l storeLayers) RemoveLayer(ctx context.Context, key string) error {
	return l.s.Remove(ctx, key)
}

// OpenStore opens the image store kept beside the layer store s: content under
// <s.Root()>/content, layers in s.
func OpenStore(s *store.Store, opts ...StoreOption) (*Store, error) {
	return Open(s.Root(), StoreLayers(s), opts...)
}

// LayerPath gives the folder of the committed Windows layer key. The store keeps
// no public path, so it is read from the mounts of a short-lived view: Windows
// layers are unioned through their Files/ folders.
func (l storeLayers) LayerPath(ctx context.Context, key string) (string, error) {
	view := "image-path-" + strings.TrimPrefix(key, "sha256:") + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	mounts, err := l.s.View(ctx, view, key)
	if err != nil {
		return "", err
	}
	defer l.s.Remove(context.WithoutCancel(ctx), view)
	for _, m := range mounts {
		if m.Type == "bind" {
			return filepath.Dir(m.Source), nil
		}
		for _, o := range m.Options {
			if lower, ok := strings.CutPrefix(o, "lowerdir="); ok {
				first, _, _ := strings.Cut(lower, ":")
				return filepath.Dir(first), nil
			}
		}
	}
	return "", fmt.Errorf("layer %s: %w: its view names no layer folder", key, ErrUnsupported)
}

// LayerDirs gives the directories of the committed layer key and its parents,
// top-most first, as hcs run takes them: a Linux layer's directory, or a Windows
// layer's folder. The store keeps no public path, so they are read from the
// mounts of a short-lived view; they stay valid while the layers are committed.
func (l storeLayers) LayerDirs(ctx context.Context, key string) ([]string, error) {
	info, err := l.s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	view := "image-dirs-" + strings.TrimPrefix(key, "sha256:") + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	mounts, err := l.s.View(ctx, view, key)
	if err != nil {
		return nil, err
	}
	defer l.s.Remove(context.WithoutCancel(ctx), view)
	var dirs []string
	for _, m := range mounts {
		if m.Type == "bind" {
			dirs = append(dirs, m.Source)
		}
		for _, o := range m.Options {
			if lower, ok := strings.CutPrefix(o, "lowerdir="); ok {
				dirs = append(dirs, strings.Split(lower, ":")...)
			}
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("layer %s: %w: its view names no layer directory", key, ErrUnsupported)
	}
	if info.Format == store.FormatWindowsFolder {
		for i, d := range dirs {
			dirs[i] = filepath.Dir(d) // the folder of its Files/
		}
	}
	return dirs, nil
}

// LayerDirs gives the directories of the layers of the stored image n, top-most
// first (the order hcs run's --layer takes): each unpacked layer's directory in
// the layer store (a Linux layer's directory, a Windows layer's folder).
func (s *Store) LayerDirs(ctx context.Context, n string) ([]string, error) {
	sum, err := s.Inspect(ctx, n)
	if err != nil {
		return nil, err
	}
	if len(sum.Layers) == 0 {
		return nil, &Error{Image: n, Op: "layer directories", Err: fmt.Errorf("%w: not an image with layers (an index? pull one platform)", ErrUnsupported)}
	}
	for _, ly := range sum.Layers {
		if !ly.Unpacked {
			return nil, &Error{Image: n, Op: "layer directories", Err: fmt.Errorf("layer %s: %w: not unpacked", ly.Digest, ErrNotFound)}
		}
	}
	ld, ok := s.layers.(interface {
		LayerDirs(ctx context.Context, key string) ([]string, error)
	})
	if !ok {
		return nil, &Error{Image: n, Op: "layer directories", Err: fmt.Errorf("%w: the layer store gives no directories", ErrUnsupported)}
	}
	dirs, err := ld.LayerDirs(ctx, sum.Layers[len(sum.Layers)-1].ChainID)
	if err != nil {
		return nil, &Error{Image: n, Op: "layer directories", Err: err}
	}
	if len(dirs) != len(sum.Layers) {
		return nil, &Error{Image: n, Op: "layer directories", Err: fmt.Errorf("the store gives %d directories for %d layers", len(dirs), len(sum.Layers))}
	}
	return dirs, nil
}
