package layers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

// ErrNoUpper means a scratch disk holds no union upper directory: no stack of
// MountLCOWLayers ever used it, so it records no changes to export.
var ErrNoUpper = fmt.Errorf("layers: the scratch disk holds no upper directory: %w", fs.ErrNotExist)

// ExportLCOWScratch writes the changes a Linux container made — the upper
// directory of the union MountLCOWLayers mounted, kept on the scratch disk
// scratchVHDPath — to w as an OCI layer tar (ocilayer.Diff): new and changed
// files, whiteouts for deletions and opaque markers for directories that
// replace a lower one. The container's stack must be unmounted first (its
// closer released): the disk is attached read-only and mounted for the time
// of the call, and released before it returns, also on failure. A mounted
// stack can be exported without this call, with ocilayer.Diff of
// <scratch mount>/upper, while nothing writes to it.
func ExportLCOWScratch(ctx context.Context, w io.Writer, scratchVHDPath string, opts ...Option) (err error) {
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	if _, err := os.Stat(scratchVHDPath); err != nil {
		return &Error{Op: "export scratch", Path: scratchVHDPath, Err: err}
	}
	target, err := os.MkdirTemp("", "hcs-lcow-export-")
	if err != nil {
		return &Error{Op: "export scratch", Path: scratchVHDPath, Err: err}
	}
	defer func() {
		if rerr := os.Remove(target); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	undo, err := host.MountDiskAt(ctx, scratchVHDPath, target, true, o.hostOptions()...)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := undo.Release(context.Background()); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	upper := filepath.Join(target, UpperDir)
	if fi, err := os.Lstat(upper); err != nil || !fi.IsDir() {
		return &Error{Op: "export scratch", Path: scratchVHDPath, Err: ErrNoUpper}
	}
	if err := ocilayer.Diff(ctx, w, upper); err != nil {
		return &Error{Op: "export scratch", Path: scratchVHDPath, Err: err}
	}
	return nil
}
