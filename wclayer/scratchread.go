package wclayer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// entrySource is what the layer readers and exporters read entries from: a layer
// folder (winlayer.Reader) or the changes of a scratch layer (winlayer.UpperReader).
type entrySource interface {
	Next() (*winlayer.Entry, error)
	OpenData() (io.ReadCloser, error)
	DataRanges() ([][2]int64, error)
	OpenStream(winlayer.Stream) (io.ReadCloser, error)
	Close() error
}

var (
	_ entrySource = (*winlayer.Reader)(nil)
	_ entrySource = (*winlayer.UpperReader)(nil)
)

// openLayerSource opens the layer folder path for reading: a read-only layer as
// itself, a scratch layer (one with a scratch disk) as its changes to its parents.
func openLayerSource(ctx context.Context, path string, parents []string) (entrySource, error) {
	disk, err := scratchDisk(path)
	if err != nil {
		return nil, err
	}
	if disk == "" {
		return winlayer.NewReader(ctx, path)
	}
	return openScratchChanges(ctx, path, parents)
}

// ScratchUpper returns the upper directory of the scratch layer at path — the
// Files/ folder of its volume, which holds what was written through its union —
// and a function that ends what the call started: a layer that is not active is
// activated until release is called. The directory may not exist yet (a layer
// never prepared has no changes).
func ScratchUpper(ctx context.Context, path string) (upper string, release func() error, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, err
	}
	release = func() error { return nil }
	p, err := host.MountPath(ctx, abs)
	if err != nil {
		return "", nil, err
	}
	if p == "" {
		if err := ActivateLayer(ctx, abs); err != nil {
			return "", nil, err
		}
		release = func() error { return DeactivateLayer(context.Background(), abs) }
		if p, err = host.MountPath(ctx, abs); err != nil || p == "" {
			release()
			if err == nil {
				err = fmt.Errorf("%w: activated, but no volume path", host.ErrNotActivated)
			}
			return "", nil, err
		}
	}
	// Prepared: the path is the union's; the volume is its sibling.
	if filepath.Base(p) == host.UnionDir {
		p = filepath.Join(filepath.Dir(p), host.VolumeDir)
	}
	return filepath.Join(p, winlayer.FilesDir), release, nil
}

// openScratchChanges reads the changes of the scratch layer at path.
func openScratchChanges(ctx context.Context, path string, parents []string) (entrySource, error) {
	if len(parents) == 0 {
		var err error
		if parents, err = winlayer.Parents(path); err != nil {
			return nil, err
		}
	}
	if len(parents) == 0 {
		return nil, fmt.Errorf("%w: the scratch layer names no parents (layerchain.json) and none were given", ErrNoParents)
	}
	upper, release, err := ScratchUpper(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(upper); errors.Is(err, fs.ErrNotExist) {
		// Never prepared: nothing was written through a union.
		return &releasing{entrySource: emptySource{}, release: release}, nil
	}
	r, err := winlayer.NewUpperReader(ctx, upper, parents)
	if err != nil {
		release()
		return nil, err
	}
	return &releasing{entrySource: r, release: release}, nil
}

// ErrNoParents means a scratch layer's changes were asked for without knowing
// the layers they change.
var ErrNoParents = errors.New("wclayer: no parent layers")

// releasing is an entry source that ends an activation when closed.
type releasing struct {
	entrySource
	release func() error
	closed  bool
}

func (r *releasing) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.entrySource.Close()
	if rerr := r.release(); err == nil {
		err = rerr
	}
	return err
}

// emptySource has no entries.
type emptySource struct{}

func (emptySource) Next() (*winlayer.Entry, error)                    { return nil, io.EOF }
func (emptySource) OpenData() (io.ReadCloser, error)                  { return nil, io.EOF }
func (emptySource) DataRanges() ([][2]int64, error)                   { return nil, nil }
func (emptySource) OpenStream(winlayer.Stream) (io.ReadCloser, error) { return nil, io.EOF }
func (emptySource) Close() error                                      { return nil }

// ExportLayerToTar writes the layer at path to w as an OCI Windows layer tar: a
// read-only layer folder as ociwclayer.ExportLayerToTar writes it, a scratch layer
// as the diff of its changes to its parents (parentLayerPaths, immediate parent
// first, or its layerchain.json when none are given), as
// ociwclayer.ExportUpperToTar writes it. Importing that diff over the parents and
// exporting the imported layer gives the same bytes. A scratch layer that is not
// active is activated for the time of the export.
func ExportLayerToTar(ctx context.Context, w io.Writer, path string, parentLayerPaths []string) error {
	disk, err := scratchDisk(path)
	if err != nil {
		return fmt.Errorf("wclayer: exporting layer %s: %w", path, err)
	}
	if disk == "" {
		return ociwclayer.ExportLayerToTar(ctx, w, path, parentLayerPaths)
	}
	parents := parentLayerPaths
	if len(parents) == 0 {
		if parents, err = winlayer.Parents(path); err != nil {
			return err
		}
	}
	if len(parents) == 0 {
		return fmt.Errorf("wclayer: exporting layer %s: %w: the scratch layer names no parents (layerchain.json) and none were given", path, ErrNoParents)
	}
	upper, release, err := ScratchUpper(ctx, path)
	if err != nil {
		return fmt.Errorf("wclayer: exporting layer %s: %w", path, err)
	}
	if _, serr := os.Lstat(upper); errors.Is(serr, fs.ErrNotExist) {
		// Never prepared: an empty diff, a valid tar of no entries.
		err = ociwclayer.EncodeTar(ctx, w, path, emptyEntries{})
	} else {
		err = ociwclayer.ExportUpperToTar(ctx, w, upper, parents)
	}
	if rerr := release(); err == nil {
		err = rerr
	}
	return err
}

// emptyEntries is an ociwclayer.EntryReader of no entries.
type emptyEntries struct{ emptySource }

func (emptyEntries) ReadDataInto([]byte) error { return io.EOF }
