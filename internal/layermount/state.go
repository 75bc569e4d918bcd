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
			e.close()
			return nil, err
		default:
			if err := json.Unmarshal(data, &e.rec); err != nil {
				e.close()
				return nil, fmt.Errorf("%w: %s: %w", ErrCorruptState, filepath.Join(dir, recordFile), err)
			}
			if e.rec.Path != abs || e.rec.Kind != kind {
				e.close()
				return nil, fmt.Errorf("%w: %s holds the %s %s", ErrCorruptState, filepath.Join(dir, recordFile), e.rec.Kind, e.rec.Path)
			}
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
