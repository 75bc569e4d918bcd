package winlayer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
)

// Create makes an empty layer at path with the given parents (immediate parent first).
func Create(ctx context.Context, path string, parents []string) error {
	w, err := NewWriter(ctx, path, parents)
	if err != nil {
		return err
	}
	return w.Close()
}

// Exists reports whether path holds a layer written by this package.
func Exists(path string) (bool, error) {
	_, err := os.Stat(filepath.Join(path, metaDB))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, &LayerError{Layer: path, Op: "stat", Err: err}
}

// Parents returns the parent layer folders recorded in layerchain.json, immediate
// parent first; none for a base layer.
func Parents(path string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(path, LayerChainFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &LayerError{Layer: path, Op: "open", Err: err}
	}
	var parents []string
	if err := json.Unmarshal(b, &parents); err != nil {
		return nil, &LayerError{Layer: path, Op: "open", Err: errors.Join(ErrCorrupt, err)}
	}
	return parents, nil
}

// Destroy removes the layer folder at path and everything in it. The folder is first
// renamed aside, so a crash midway leaves no half-removed layer at path; the next
// NewWriter or Destroy in the same parent folder removes the remains. A missing path is
// not an error.
func Destroy(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return &LayerError{Layer: path, Op: "destroy", Err: err}
	}
	if _, err := os.Lstat(abs); errors.Is(err, os.ErrNotExist) {
		CleanStale(filepath.Dir(abs))
		return nil
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	aside := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+destroyingMarker+hex.EncodeToString(rnd[:]))
	if err := os.Rename(abs, aside); err != nil {
		return &LayerError{Layer: abs, Op: "destroy", Err: err}
	}
	if err := os.RemoveAll(aside); err != nil {
		return &LayerError{Layer: abs, Op: "destroy", Err: err}
	}
	CleanStale(filepath.Dir(abs))
	return nil
}
