package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/internal/state"
	"github.com/hostcompute/hostcompute/pkg/guid"
)

// record is the JSON state of one layer or volume, LayerStateDir()/<guid>/state.json.
type record struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"`           // kindLayer or kindOverlay
	Path    string `json:"path"`           // the layer folder or the volume
	Disk    string `json:"disk,omitempty"` // the scratch disk of a layer
	// Pending is set while the first Activate attaches and mounts: if the
	// process dies, the next call undoes what it left.
	Pending     bool     `json:"pending,omitempty"`
	Activations int      `json:"activations,omitempty"`
	Prepares    int      `json:"prepares,omitempty"`
	Parents     []string `json:"parents,omitempty"`
}

const (
	kindLayer   = "layer"
	kindOverlay = "overlay"
)

// entry is a locked state directory with its record.
type entry struct {
	dir  string
	lock *state.Lock
	rec  record
}

// key returns the state directory of an absolute path.
func key(abs string) string {
	return filepath.Join(LayerStateDir(), guid.NameToGuid(abs).String())
}

// open locks the state directory of abs (making it) and reads its record; a
// missing record is a zero one. The lock is an flock on dir/lock, retried
// when the file was removed by a holder that finished with the entry.
func open(abs, kind string) (*entry, error) {
	dir := key(abs)
	lock, err := state.LockFile(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	e := &entry{dir: dir, lock: lock, rec: record{Version: recordVersion, Kind: kind, Path: abs}}
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		lock.Close()
		return nil, err
	default:
		// A bad record is kept for inspection: only the lock is released.
		rec, err := parseRecord(data, abs, kind)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
		}
		e.rec = rec
	}
	return e, nil
}

// save writes the record (package internal/state).
func (e *entry) save() error {
	return state.WriteRecord(filepath.Join(e.dir, recordFile), &e.rec)
}

// close releases the lock. An entry with nothing held is removed, lock file
// last, so that a waiter finds its lock stale and starts again.
func (e *entry) close() {
	if e.rec.Activations == 0 && e.rec.Prepares == 0 && !e.rec.Pending {
		for _, n := range []string{recordFile, VolumeDir, UnionDir, lockFile} {
			os.Remove(filepath.Join(e.dir, n))
		}
		os.Remove(e.dir)
	}
	e.lock.Close()
}

const (
	lockFile      = "lock"
	recordFile    = "state.json"
	recordVersion = 1
)

// parseRecord decodes a state record of the layer or volume abs and checks
// that it is one this package could have written for it.
func parseRecord(data []byte, abs, kind string) (record, error) {
	var r record
	p := filepath.Join(key(abs), recordFile)
	if err := state.DecodeRecord(p, data, recordVersion, &r); err != nil {
		return record{}, err
	}
	bad := func(err error) (record, error) { return record{}, fmt.Errorf("%w: %s: %w", state.ErrBadRecord, p, err) }
	switch {
	case r.Path != abs || r.Kind != kind:
		return bad(fmt.Errorf("holds the %s %s", r.Kind, r.Path))
	case r.Activations < 0 || r.Prepares < 0:
		return bad(fmt.Errorf("negative counts %d, %d", r.Activations, r.Prepares))
	case kind == kindLayer && r.Prepares > 0 && r.Activations == 0:
		return bad(fmt.Errorf("prepared %d times but not active", r.Prepares))
	case kind == kindLayer && (r.Activations > 0 || r.Pending) && !filepath.IsAbs(r.Disk):
		return bad(fmt.Errorf("active without an absolute disk path (%q)", r.Disk))
	case kind == kindOverlay && (r.Activations != 0 || r.Pending || r.Disk != ""):
		return bad(errors.New("an overlay record with layer fields"))
	}
	for _, parent := range r.Parents {
		if !filepath.IsAbs(parent) {
			return bad(fmt.Errorf("parent %q is not absolute", parent))
		}
	}
	return r, nil
}
