package layermount

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// record is the JSON state of one layer or volume, StateDir()/<guid>/state.json.
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
	lock *os.File
	rec  record
}

// key returns the state directory of an absolute path.
func key(abs string) string {
	return filepath.Join(StateDir(), guid.NameToGuid(abs).String())
}

// open locks the state directory of abs (making it) and reads its record; a
// missing record is a zero one. The lock is an flock on dir/lock, retried
// when the file was removed by a holder that finished with the entry.
func open(abs, kind string) (*entry, error) {
	dir := key(abs)
	for {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed between MkdirAll and OpenFile
		}
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
		// The holder before us may have removed the entry: then our lock is on
		// a file nobody else will find, and we start again.
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(filepath.Join(dir, lockFile), &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
			f.Close()
			continue
		}
		e := &entry{dir: dir, lock: f, rec: record{Version: 1, Kind: kind, Path: abs}}
		data, err := os.ReadFile(filepath.Join(dir, recordFile))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			f.Close()
			return nil, err
		default:
			// A bad record is kept for inspection: only the lock is released.
			rec, err := parseRecord(data, abs, kind)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%w: %s: %w", ErrCorruptState, filepath.Join(dir, recordFile), err)
			}
			e.rec = rec
		}
		return e, nil
	}
}

// save writes the record through a synced temporary file and a rename.
func (e *entry) save() error {
	data, err := json.MarshalIndent(&e.rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(e.dir, recordFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(e.dir, recordFile))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(e.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// close releases the lock. An entry with nothing held is removed, lock file
// last, so that a waiter finds its lock stale and starts again.
func (e *entry) close() {
	if e.rec.Activations == 0 && e.rec.Prepares == 0 && !e.rec.Pending {
		for _, n := range []string{recordFile, recordFile + ".tmp", VolumeDir, UnionDir, lockFile} {
			os.Remove(filepath.Join(e.dir, n))
		}
		os.Remove(e.dir)
	}
	e.lock.Close()
}

const (
	lockFile   = "lock"
	recordFile = "state.json"
)

// parseRecord decodes a state record of the layer or volume abs and checks
// that it is one this package could have written for it.
func parseRecord(data []byte, abs, kind string) (record, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return record{}, err
	}
	switch {
	case r.Version != 1:
		return record{}, fmt.Errorf("version %d, want 1", r.Version)
	case r.Path != abs || r.Kind != kind:
		return record{}, fmt.Errorf("holds the %s %s", r.Kind, r.Path)
	case r.Activations < 0 || r.Prepares < 0:
		return record{}, fmt.Errorf("negative counts %d, %d", r.Activations, r.Prepares)
	case kind == kindLayer && r.Prepares > 0 && r.Activations == 0:
		return record{}, fmt.Errorf("prepared %d times but not active", r.Prepares)
	case kind == kindLayer && (r.Activations > 0 || r.Pending) && !filepath.IsAbs(r.Disk):
		return record{}, fmt.Errorf("active without an absolute disk path (%q)", r.Disk)
	case kind == kindOverlay && (r.Activations != 0 || r.Pending || r.Disk != ""):
		return record{}, errors.New("an overlay record with layer fields")
	}
	for _, p := range r.Parents {
		if !filepath.IsAbs(p) {
			return record{}, fmt.Errorf("parent %q is not absolute", p)
		}
	}
	return r, nil
}
