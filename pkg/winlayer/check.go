//go:build unix

package winlayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Check verifies a layer's invariants: every metadata record has its file, of the right
// kind; every alternate data stream has its content file with the recorded size; every
// security descriptor a record names is stored; no stream file is left without a record.
// It returns the problems found (none for a sound layer); the error is for failures to
// read the layer at all. Files without a record are not problems: tools may add them.
func Check(ctx context.Context, path string) ([]Problem, error) {
	s, err := openStore(filepath.Join(path, metaDB))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &LayerError{Layer: path, Op: "check", Err: ErrNotLayer}
		}
		return nil, &LayerError{Layer: path, Op: "check", Err: err}
	}
	defer s.close()
	var problems []Problem
	add := func(entry, format string, args ...any) {
		problems = append(problems, Problem{Entry: entry, Reason: fmt.Sprintf(format, args...)})
	}
	streams := map[uint64]bool{}
	err = s.tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := decodeRecord(v)
		if err != nil {
			add(string(k), "undecodable record: %v", err)
			return nil
		}
		name := r.entry.Name
		if foldName(name) != string(k) {
			add(name, "stored under key %q", k)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(path, name), &st); err != nil {
			add(name, "recorded but missing: %v", err)
			return nil
		}
		switch {
		case r.entry.linkReparse() != nil:
			if !isSymlinkMode(st.Mode) {
				add(name, "a symbolic link or junction, but not a symbolic link on disk")
			}
		case r.entry.IsDir():
			if !isDirMode(st.Mode) {
				add(name, "a directory, but not a directory on disk")
			}
		default:
			if !isRegMode(st.Mode) {
				add(name, "a file, but not a regular file on disk")
			}
		}
		if r.sdHash != nil && s.tx.Bucket(bucketSDs).Get(r.sdHash) == nil {
			add(name, "security descriptor %x missing", r.sdHash)
		}
		check := func(id uint64, size int64, what string) {
			streams[id] = true
			fi, err := os.Stat(filepath.Join(path, streamsDir, fmt.Sprintf("%016x", id)))
			switch {
			case err != nil:
				add(name, "%s: content file missing: %v", what, err)
			case fi.Size() != size:
				add(name, "%s: content file holds %d bytes, recorded %d", what, fi.Size(), size)
			}
		}
		for _, st := range r.entry.Streams {
			check(st.id, st.Size, "stream "+st.Name)
		}
		if r.dataID != 0 {
			check(r.dataID, r.entry.Size, "data")
		}
		return nil
	})
	if err != nil {
		return nil, &LayerError{Layer: path, Op: "check", Err: err}
	}
	ents, err := os.ReadDir(filepath.Join(path, streamsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, &LayerError{Layer: path, Op: "check", Err: err}
	}
	for _, e := range ents {
		id, err := strconv.ParseUint(e.Name(), 16, 64)
		if err != nil || !streams[id] {
			add(streamsDir+"/"+e.Name(), "stream file without a record")
		}
	}
	return problems, nil
}
