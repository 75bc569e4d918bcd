// Package state is where the host engine keeps what it holds: one state root,
// one record format and one lock discipline, shared by every store of host
// state (disk attachments, FUSE helpers, layer activations, disk mounts).
//
// # Root
//
// All host state lives under one directory, Root(): /run/hostcompute unless
// $HOSTCOMPUTE_STATE_DIR names another. /run is a tmpfs, emptied at boot,
// which is right: every entry describes something in the kernel (a mount, a
// loop device, a process) that a reboot ends too. Each store has a fixed
// subdirectory, Dir(name): attach/, fuse/, layers/, mounts/, cim/.
//
// # Records
//
// A record is one JSON object with a "version" field, written with
// WriteRecord (package atomicfile: temporary file, fsync, rename, fsync of
// the directory), so a reader sees the old record or the new one. ReadRecord
// refuses a record that does not parse or has another version with an error
// matching ErrBadRecord and leaves the file where it is, for inspection: a
// store never deletes what it cannot read.
//
// # Locks
//
// An entry (a directory of one store) is guarded by an flock(2) on a file in
// it, held for as long as an operation or a helper process works on the
// entry. A lock nobody holds means nobody is working there: the entry is
// either idle or left by a process that died, which is how every store finds
// what crashes left. LockFile waits for the lock; TryLock fails at once with
// ErrLocked. An entry removed while a caller waited for its lock is noticed
// (the locked file is no longer the one at the path) and the caller starts
// again with the new entry.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
)

// EnvRoot is the environment variable that moves the state root.
const EnvRoot = "HOSTCOMPUTE_STATE_DIR"

// DefaultRoot is the state root unless $HOSTCOMPUTE_STATE_DIR names another.
const DefaultRoot = "/run/hostcompute"

// Root returns the state root.
func Root() string {
	if d := os.Getenv(EnvRoot); d != "" {
		return d
	}
	return DefaultRoot
}

// Subdirectories of the root, one per store.
const (
	Attach = "attach" // disk attachments (internal/attach)
	FUSE   = "fuse"   // FUSE helper processes (internal/fusefs)
	Layers = "layers" // activations and unions of writable layers (host)
	Mounts = "mounts" // mount points of disks mounted by path (host)
	CIM    = "cim"    // mount points of CIM views (wclayer/cim, host)
)

// Dir returns the directory of the store name under the root.
func Dir(name string) string { return filepath.Join(Root(), name) }

// ErrBadRecord means a record does not parse or has a version this program
// does not write. The file is left as it is.
var ErrBadRecord = errors.New("state: unusable record")

// WriteRecord replaces the record at path with v, encoded as indented JSON.
// v must have a "version" field.
func WriteRecord(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// ReadRecord reads the record at path into v, checking that its "version" is
// version. A missing file gives an error matching fs.ErrNotExist; one that
// does not parse or has another version an error matching ErrBadRecord that
// names the file.
func ReadRecord(path string, version int, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return DecodeRecord(path, b, version, v)
}

// DecodeRecord is ReadRecord for a record already read from path.
func DecodeRecord(path string, b []byte, version int, v any) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadRecord, path, err)
	}
	if head.Version == nil {
		return fmt.Errorf("%w: %s: no version field", ErrBadRecord, path)
	}
	if *head.Version != version {
		return fmt.Errorf("%w: %s: version %d, want %d", ErrBadRecord, path, *head.Version, version)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadRecord, path, err)
	}
	return nil
}

// IsMissing reports whether err says a record or entry does not exist.
func IsMissing(err error) bool { return errors.Is(err, fs.ErrNotExist) }
