package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Problem is one disagreement between the store's records and its files or the
// kernel's tables, as Check finds it.
type Problem struct {
	// Kind names the problem: one of the Problem* constants.
	Kind string `json:"kind"`
	// Key is the layer concerned, when known.
	Key string `json:"key,omitempty"`
	// Path is the file or mount point concerned, when there is one.
	Path string `json:"path,omitempty"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Repair says what Repair (or reconcile, for leftovers) does about it.
	Repair string `json:"repair"`
}

// Kinds of problems. Leftovers of crashed processes (the first group) are
// cleaned by every Open; damage (the second) only by Repair.
const (
	ProblemStaging     = "dead-staging"          // staging directory of a process that died
	ProblemTrash       = "trash"                 // removed layer not yet deleted
	ProblemOrphanDir   = "orphan-directory"      // layer directory no record names
	ProblemStaleMount  = "stale-mount-record"    // mount record of a dead process, or of a mount that is gone
	ProblemMissingDir  = "missing-directory"     // record whose layer directory is gone
	ProblemDangling    = "dangling-parent"       // record whose parent has no record
	ProblemCorrupt     = "corrupt-record"        // record that does not decode (truncated, overwritten)
	ProblemIndex       = "index"                 // ID, children or parent chain index disagreeing with the records
	ProblemUnknownFile = "unknown-file"          // a name under layers/ the store never makes
	ProblemLayerFiles  = "layer-content-missing" // layer directory without the content its format needs
	ProblemOldVolatile = "earlier-boot-records"  // volatile file of an earlier boot: Prepares and Views never made durable
)

// mountRecord is kept, in v1/mounts, for every mount the store makes itself
// (the union an import applies a layer through), from before the mount is made
// until after it is undone, so that a process killed in between leaves a
// record naming what to undo.
type mountRecord struct {
	Target string `json:"target"`
	Key    string `json:"key,omitempty"`
	PID    int    `json:"pid"`
	Start  uint64 `json:"start"` // the process's start time (field 22 of /proc/PID/stat)
}

// processStart returns the start time of process pid, so that a reused PID is
// not taken for the process that made a record; 0 when there is no such process.
func processStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

func (m *mountRecord) alive() bool {
	return m.PID > 0 && processStart(m.PID) == m.Start
}

// selfStart is this process's start time, read when first needed (not at
// start-up, which every process linking the store would pay).
var selfStart = sync.OnceValue(func() uint64 { return processStart(os.Getpid()) })

// addMountRecord records that the calling process is about to mount at target.
func addMountRecord(tx *txn, key, target string) error {
	_, _, _, mb := buckets(tx)
	v, err := json.Marshal(mountRecord{Target: target, Key: key, PID: os.Getpid(), Start: selfStart()})
	if err != nil {
		return err
	}
	return mb.Put([]byte(target), v)
}

func deleteMountRecord(tx *txn, target string) error {
	_, _, _, mb := buckets(tx)
	return mb.Delete([]byte(target))
}

// releaseMounts fails when a live process has a mount of layer key recorded.
func (s *Store) releaseMounts(tx *txn, key string) error {
	_, _, _, mb := buckets(tx)
	return mb.ForEach(func(k, v []byte) error {
		var m mountRecord
		if json.Unmarshal(v, &m) == nil && m.Key == key && m.alive() {
			return classf(ErrFailedPrecondition, "layer %q is mounted at %s by process %d", key, m.Target, m.PID)
		}
		return nil
	})
}

// tryLock takes an exclusive flock on the directory p without waiting. It
// returns nil, nil when another process holds it (a live writer).
func tryLock(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, err
	}
	return f, nil
}

// reconcile removes what crashed processes left: mounts and records of dead
// processes, staging directories no live process holds, the trash, and layer
// directories no record names. It runs under the exclusive lock, in tx, so
// every other process is outside its critical sections; what is in progress
// elsewhere (staging, deleting) is flock-held and left alone.
func (s *Store) reconcile(ctx context.Context, tx *txn) ([]Problem, error) {
	var fixed []Problem
	_, ib, _, mb := buckets(tx)
	var stale []string
	err := mb.ForEach(func(k, v []byte) error {
		var m mountRecord
		if err := json.Unmarshal(v, &m); err == nil && m.alive() {
			return nil
		}
		stale = append(stale, string(k))
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range stale {
		if disk, ok := strings.CutPrefix(t, diskRecordPrefix); ok {
			if err := releaseDisk(ctx, disk); err != nil {
				return fixed, fmt.Errorf("releasing disk %s, attached by a dead process: %w", disk, err)
			}
		} else if err := unmountUnder(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fixed, fmt.Errorf("unmounting %s, left by a dead process: %w", t, err)
		}
		if err := mb.Delete([]byte(t)); err != nil {
			return fixed, err
		}
		fixed = append(fixed, Problem{Kind: ProblemStaleMount, Path: t, Detail: "mount record of a process that is gone", Repair: "unmounted and record deleted"})
	}
	for _, d := range []struct{ dir, kind string }{{stagingDir, ProblemStaging}, {trashDir, ProblemTrash}} {
		ents, err := os.ReadDir(s.path(d.dir))
		if err != nil {
			return fixed, err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return fixed, err
			}
			p := s.path(d.dir, e.Name())
			f, err := tryLock(p)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fixed, err
			}
			if f == nil {
				continue // held by a live process, or gone
			}
			err = removeAllUnder(p)
			f.Close()
			if err != nil {
				return fixed, err
			}
			fixed = append(fixed, Problem{Kind: d.kind, Path: p, Detail: "left by a process that is gone", Repair: "removed"})
		}
	}
	// The records of an earlier boot's volatile file were never made durable:
	// their layers are as if never made, and their directories orphans.
	old, err := s.staleVolatileFiles()
	if err != nil {
		return fixed, err
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fixed, err
		}
		fixed = append(fixed, Problem{Kind: ProblemOldVolatile, Path: p, Detail: "records of Prepare and View of an earlier boot, never made durable", Repair: "deleted unread; the directories they named are removed as orphans"})
	}
	orphans, _, err := s.orphanDirs(ib)
	if err != nil {
		return fixed, err
	}
	for _, p := range orphans {
		if err := removeAllUnder(p); err != nil {
			return fixed, err
		}
		fixed = append(fixed, Problem{Kind: ProblemOrphanDir, Path: p, Detail: "no record names this layer directory", Repair: "removed"})
	}
	if len(orphans) > 0 {
		if err := syncDir(s.path(layersDir)); err != nil {
			return fixed, err
		}
	}
	return fixed, nil
}

// orphanDirs lists the directories under layers/ that no ID in ib names, and
// the names there the store never makes.
func (s *Store) orphanDirs(ib *bkt) (orphans, unknown []string, err error) {
	f, err := os.Open(s.path(layersDir))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		id, err := strconv.ParseUint(n, 10, 64)
		if err != nil || id == 0 || strconv.FormatUint(id, 10) != n {
			unknown = append(unknown, s.path(layersDir, n))
			continue
		}
		if ib.Get(idKey(id)) == nil {
			orphans = append(orphans, s.path(layersDir, n))
		}
	}
	sort.Strings(orphans)
	return orphans, unknown, nil
}

// GC removes what no record references — staging directories of dead writers
// and their mounts, the trash, unreferenced layer directories, stale mount
// records — as Open does, and returns what it removed.
func (s *Store) GC(ctx context.Context) ([]Problem, error) {
	var fixed []Problem
	err := s.update(ctx, func(tx *txn) error {
		var err error
		fixed, err = s.reconcile(ctx, tx)
		return err
	}, nil)
	return fixed, opErr("gc", "", err)
}

// Check compares the records with the layer directories and the mount table and
// returns every problem found, changing nothing. A store that only crashed
// processes touched has no problems after Open; the rest is damage for Repair.
func (s *Store) Check(ctx context.Context) ([]Problem, error) {
	var ps []Problem
	err := s.view(ctx, func(tx *txn) error {
		var err error
		ps, err = s.check(ctx, tx)
		return err
	})
	return ps, opErr("check", "", err)
}

func (s *Store) check(ctx context.Context, tx *txn) ([]Problem, error) {
	var ps []Problem
	lb, ib, cb, mb := buckets(tx)
	recs := map[string]*record{}
	err := lb.ForEach(func(k, v []byte) error {
		r, err := decodeRecord(string(k), v)
		if err != nil {
			ps = append(ps, Problem{Kind: ProblemCorrupt, Key: string(k), Detail: err.Error(), Repair: "record deleted; its directory is then unreferenced and removed"})
			return nil
		}
		recs[r.Key] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := recs[k]
		dir := s.layerDir(r.ID)
		if r.HasDir {
			if _, err := os.Lstat(dir); err != nil {
				ps = append(ps, Problem{Kind: ProblemMissingDir, Key: k, Path: dir, Detail: err.Error(), Repair: "record deleted (with the layers above it)"})
			} else if need := s.contentPath(r); need != "" && !exists(need) {
				ps = append(ps, Problem{Kind: ProblemLayerFiles, Key: k, Path: need, Detail: "missing", Repair: "record deleted (with the layers above it)"})
			}
		}
		if r.Parent != "" && recs[r.Parent] == nil && lb.Get([]byte(r.Parent)) == nil {
			ps = append(ps, Problem{Kind: ProblemDangling, Key: k, Detail: fmt.Sprintf("parent %q has no record", r.Parent), Repair: "record deleted (with the layers above it)"})
		}
		if got := ib.Get(idKey(r.ID)); string(got) != k {
			ps = append(ps, Problem{Kind: ProblemIndex, Key: k, Detail: fmt.Sprintf("ID %d is indexed as %q", r.ID, got), Repair: "indexes rebuilt"})
		}
		if r.Parent != "" && cb.Get(childKey(r.Parent, k)) == nil {
			ps = append(ps, Problem{Kind: ProblemIndex, Key: k, Detail: "missing from its parent's children index", Repair: "indexes rebuilt"})
		}
	}
	err = ib.ForEach(func(k, v []byte) error {
		if r := recs[string(v)]; len(k) != 8 || r == nil || string(idKey(r.ID)) != string(k) {
			if lb.Get(v) == nil || r != nil {
				ps = append(ps, Problem{Kind: ProblemIndex, Key: string(v), Detail: "ID index entry without its record", Repair: "indexes rebuilt"})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	chainProblems, err := checkChains(tx, recs)
	if err != nil {
		return nil, err
	}
	ps = append(ps, chainProblems...)
	err = cb.ForEach(func(k, _ []byte) error {
		parent, child, ok := strings.Cut(string(k), "\x00")
		if r := recs[child]; !ok || r == nil || r.Parent != parent {
			if lb.Get([]byte(child)) == nil || r != nil {
				ps = append(ps, Problem{Kind: ProblemIndex, Key: child, Detail: fmt.Sprintf("children index entry under %q without a record", parent), Repair: "indexes rebuilt"})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = mb.ForEach(func(k, v []byte) error {
		var m mountRecord
		if err := json.Unmarshal(v, &m); err != nil {
			ps = append(ps, Problem{Kind: ProblemStaleMount, Path: string(k), Detail: "mount record does not decode: " + err.Error(), Repair: "unmounted and record deleted"})
		} else if !m.alive() {
			ps = append(ps, Problem{Kind: ProblemStaleMount, Key: m.Key, Path: m.Target, Detail: fmt.Sprintf("made by process %d, which is gone", m.PID), Repair: "unmounted and record deleted"})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	orphans, unknown, err := s.orphanDirs(ib)
	if err != nil {
		return nil, err
	}
	for _, p := range orphans {
		ps = append(ps, Problem{Kind: ProblemOrphanDir, Path: p, Detail: "no record names this layer directory", Repair: "removed"})
	}
	old, err := s.staleVolatileFiles()
	if err != nil {
		return nil, err
	}
	for _, p := range old {
		ps = append(ps, Problem{Kind: ProblemOldVolatile, Path: p, Detail: "records of Prepare and View of an earlier boot, never made durable", Repair: "deleted unread; the directories they named are removed as orphans"})
	}
	for _, p := range unknown {
		ps = append(ps, Problem{Kind: ProblemUnknownFile, Path: p, Detail: "not a name the store makes", Repair: "left alone"})
	}
	for _, d := range []struct{ dir, kind string }{{stagingDir, ProblemStaging}, {trashDir, ProblemTrash}} {
		ents, err := os.ReadDir(s.path(d.dir))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			p := s.path(d.dir, e.Name())
			f, err := tryLock(p)
			if err != nil || f == nil {
				continue // in use by a live process
			}
			f.Close()
			ps = append(ps, Problem{Kind: d.kind, Path: p, Detail: "left by a process that is gone", Repair: "removed"})
		}
	}
	return ps, nil
}

// contentPath is a path the layer's format needs inside its directory.
func (s *Store) contentPath(r *record) string {
	switch {
	case r.Kind == KindActive:
		return s.upperDir(r)
	case r.Kind == KindCommitted && r.Format == FormatExt4VHD:
		return filepath.Join(s.layerDir(r.ID), "fs", ext4VHDFile)
	case r.Kind == KindCommitted:
		return filepath.Join(s.layerDir(r.ID), "fs")
	}
	return ""
}

// Repair mends what Check finds and returns what it did: it deletes records that
// do not decode, records whose directory or content is gone and records whose
// parent is gone (and, repeatedly, the layers above them), then rebuilds the ID
// and children indexes from the records and removes what nothing references.
// What a deleted record described is lost: Repair makes the store consistent,
// it cannot bring back a layer's content.
func (s *Store) Repair(ctx context.Context) ([]Problem, error) {
	var done []Problem
	err := s.update(ctx, func(tx *txn) error {
		found, err := s.check(ctx, tx)
		if err != nil {
			return err
		}
		lb, _, _, _ := buckets(tx)
		drop := map[string]bool{}
		for _, p := range found {
			switch p.Kind {
			case ProblemCorrupt, ProblemMissingDir, ProblemDangling, ProblemLayerFiles:
				drop[p.Key] = true
			}
		}
		// Read what decodes, dropping the damaged and, until nothing changes,
		// the layers whose parent is dropped or missing.
		recs := map[string]*record{}
		err = lb.ForEach(func(k, v []byte) error {
			if r, err := decodeRecord(string(k), v); err == nil && !drop[string(k)] {
				recs[r.Key] = r
			}
			return nil
		})
		if err != nil {
			return err
		}
		for changed := true; changed; {
			changed = false
			for k, r := range recs {
				if r.Parent != "" && recs[r.Parent] == nil {
					delete(recs, k)
					drop[k] = true
					changed = true
					done = append(done, Problem{Kind: ProblemDangling, Key: k, Detail: fmt.Sprintf("parent %q was dropped", r.Parent), Repair: "record deleted"})
				}
			}
		}
		for k := range drop {
			if err := lb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		v1 := tx.Bucket(bucketV1)
		for _, name := range [][]byte{bucketIDs, bucketChildren} {
			if err := v1.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := v1.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := rebuildChains(tx, recs); err != nil {
			return err
		}
		_, ib, cb, _ := buckets(tx)
		for _, r := range recs {
			if err := ib.Put(idKey(r.ID), []byte(r.Key)); err != nil {
				return err
			}
			if r.Parent != "" {
				if err := cb.Put(childKey(r.Parent, r.Key), nil); err != nil {
					return err
				}
			}
		}
		for _, p := range found {
			switch p.Kind {
			case ProblemCorrupt, ProblemMissingDir, ProblemDangling, ProblemLayerFiles, ProblemIndex:
				done = append(done, p)
			}
		}
		fixed, err := s.reconcile(ctx, tx)
		done = append(done, fixed...)
		return err
	}, nil)
	return done, opErr("repair", "", err)
}
