package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Prepare and View write their records without waiting for the disk: a mount
// does not survive a reboot, and a layer directory no record names is garbage
// that Open removes, so all a new active layer or view needs is to be visible
// to every process at once and to survive the crash of the process that made
// it, which the page cache gives. Its record goes to a second bbolt file,
// volatile-<boot ID>.db, committed without fdatasync. The next synced
// transaction of any process (Commit, Remove, Import, Update, Repair, GC, Open,
// Close) first moves every record of that file into meta.db, syncing their
// directories, and only then does its own work: from its commit on, those
// layers are as durable as any other.
//
// The file is named by the kernel's boot ID because after a power loss or an OS
// crash it may hold anything: bbolt without fdatasync orders nothing on disk.
// It is never read in another boot; Open deletes the file of an earlier boot
// unread, and the directories its records named become orphans, removed by the
// same reconcile. A record of the volatile file is stale, rather than pending,
// when its ID is at most meta.db's layer sequence: a fold that committed in
// meta.db but was killed before deleting it from the volatile file. Readers
// skip those and the next writer deletes them.

// volatilePrefix and volatileSuffix frame the boot ID in the volatile file's
// name.
const (
	volatilePrefix = "volatile-"
	volatileSuffix = ".db"
)

// bootID identifies this boot of the machine: /proc/sys/kernel/random/boot_id,
// a random UUID the kernel draws at boot.
// It is read when first needed.
var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

// volatilePath is the volatile file of this boot, "" when the boot ID cannot be
// read (then Prepare and View sync their records like every other operation).
func (s *Store) volatilePath() string {
	s.volatileOnce.Do(func() {
		if id := bootID(); id != "" && !strings.ContainsAny(id, "/\x00") {
			s.volatile = s.path(volatilePrefix + id + volatileSuffix)
		}
	})
	return s.volatile
}

// staleVolatileFiles lists the volatile files of earlier boots.
func (s *Store) staleVolatileFiles() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, err
	}
	cur := filepath.Base(s.volatilePath())
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, volatilePrefix) && strings.HasSuffix(n, volatileSuffix) && n != cur {
			out = append(out, s.path(n))
		}
	}
	return out, nil
}

// openVolatile opens the volatile file of this boot, read-only or for writing
// (its commits unsynced); with create it is made when missing, else nil is
// returned for a missing file.
func (s *Store) openVolatile(write, create bool) (*bolt.DB, error) {
	p := s.volatilePath()
	if p == "" {
		return nil, nil
	}
	if !create {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	db, err := bolt.Open(p, 0o600, &bolt.Options{
		Timeout:  s.lockTO,
		ReadOnly: !write,
		// Nothing here is meant to reach the disk in order, so neither the
		// commits nor the file's growth are synced. The freelist is written
		// (unsynced) with each commit: reading it back is cheaper than the
		// scan of every page bbolt makes at open without it, and each Prepare
		// and View opens the file.
		NoSync:     true,
		NoGrowSync: true,
	})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// volatileBuckets makes the volatile file's buckets when they are missing.
func volatileBuckets(tx *bolt.Tx) error {
	v1, err := tx.CreateBucketIfNotExists(bucketV1)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketLayers, bucketIDs, bucketChildren} {
		if _, err := v1.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// txn is one transaction over the store's records: meta.db's, and in read
// transactions and Prepare or View also the pending records of the volatile
// file. Lookups see both (meta.db first); writes go to w's file, which is
// meta.db except in Prepare and View.
type txn struct {
	*bolt.Tx          // meta.db
	vol      *bolt.Tx // the volatile file, or nil
	toVol    bool     // writes go to vol
	stale    map[string]bool
}

// staleVolatile returns the keys of the volatile records already folded into
// meta.db (their IDs are at most its layer sequence), nil when none.
func staleVolatile(meta, vol *bolt.Tx) map[string]bool {
	mv1, vv1 := meta.Bucket(bucketV1), vol.Bucket(bucketV1)
	if mv1 == nil || vv1 == nil || mv1.Bucket(bucketLayers) == nil || vv1.Bucket(bucketIDs) == nil {
		return nil
	}
	seq := mv1.Bucket(bucketLayers).Sequence()
	var out map[string]bool
	c := vv1.Bucket(bucketIDs).Cursor()
	for k, v := c.First(); k != nil && len(k) == 8 && binary.BigEndian.Uint64(k) <= seq; k, v = c.Next() {
		if out == nil {
			out = map[string]bool{}
		}
		out[string(v)] = true
	}
	return out
}

// bkt is one bucket of a txn: meta.db's m, the volatile file's v (may be nil).
type bkt struct {
	m, v    *bolt.Bucket
	toVol   bool
	name    []byte
	staleFn func(k []byte) bool
}

func (b *bkt) w() *bolt.Bucket {
	if b.toVol {
		return b.v
	}
	return b.m
}

func (b *bkt) Get(k []byte) []byte {
	if v := b.m.Get(k); v != nil {
		return v
	}
	if b.v != nil && !b.staleFn(k) {
		return b.v.Get(k)
	}
	return nil
}

func (b *bkt) Put(k, v []byte) error { return b.w().Put(k, v) }
func (b *bkt) Delete(k []byte) error { return b.w().Delete(k) }

// NextSequence allocates a layer ID in meta.db. Every write transaction on
// meta.db has folded the volatile records first, and the fold raises the
// sequence past their IDs.
func (b *bkt) NextSequence() (uint64, error) { return b.m.NextSequence() }

// ForEach calls fn for meta.db's entries, then for the pending volatile ones.
func (b *bkt) ForEach(fn func(k, v []byte) error) error {
	if err := b.m.ForEach(fn); err != nil {
		return err
	}
	if b.v == nil {
		return nil
	}
	return b.v.ForEach(func(k, v []byte) error {
		if b.staleFn(k) || b.m.Get(k) != nil {
			return nil
		}
		return fn(k, v)
	})
}

// hasPrefix says whether some key starts with prefix.
func (b *bkt) hasPrefix(prefix []byte) bool {
	for _, x := range []*bolt.Bucket{b.m, b.v} {
		if x == nil {
			continue
		}
		c := x.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if x == b.v && b.staleFn(k) {
				continue
			}
			return true
		}
	}
	return false
}

func buckets(tx *txn) (layers, ids, children, mounts *bkt) {
	v1 := tx.Bucket(bucketV1)
	if v1 == nil {
		return nil, nil, nil, nil
	}
	var vv1 *bolt.Bucket
	if tx.vol != nil {
		vv1 = tx.vol.Bucket(bucketV1)
	}
	mk := func(name []byte, stale func(k []byte) bool) *bkt {
		b := &bkt{m: v1.Bucket(name), toVol: tx.toVol, name: name, staleFn: stale}
		if vv1 != nil {
			b.v = vv1.Bucket(name)
		}
		return b
	}
	layers = mk(bucketLayers, func(k []byte) bool { return tx.stale[string(k)] })
	ids = mk(bucketIDs, func(k []byte) bool {
		return len(k) == 8 && binary.BigEndian.Uint64(k) <= v1.Bucket(bucketLayers).Sequence()
	})
	children = mk(bucketChildren, func(k []byte) bool {
		_, child, _ := bytes.Cut(k, []byte{0})
		return tx.stale[string(child)]
	})
	mounts = &bkt{m: v1.Bucket(bucketMounts), name: bucketMounts}
	return layers, ids, children, mounts
}

// fold moves the pending records of the volatile file into meta.db (in tx, not
// yet committed) and returns the keys moved and the directories to sync before
// the commit. Stale records are skipped: they are in meta.db already, or were
// removed after being folded.
func fold(tx, vol *bolt.Tx) (moved []string, err error) {
	vv1 := vol.Bucket(bucketV1)
	if vv1 == nil || vv1.Bucket(bucketLayers) == nil {
		return nil, nil
	}
	stale := staleVolatile(tx, vol)
	t := &txn{Tx: tx}
	lb, ib, cb, _ := buckets(t)
	seq := lb.m.Sequence()
	err = vv1.Bucket(bucketLayers).ForEach(func(k, v []byte) error {
		if stale[string(k)] {
			return nil
		}
		// The values stay meta.db's until its commit, past this view of the
		// volatile file.
		k, v = bytes.Clone(k), bytes.Clone(v)
		if err := lb.Put(k, v); err != nil {
			return err
		}
		moved = append(moved, string(k))
		var r record
		if json.Unmarshal(v, &r) != nil || r.ID == 0 {
			return nil // Check reports it as a corrupt record, Repair drops it
		}
		seq = max(seq, r.ID)
		if err := ib.Put(idKey(r.ID), k); err != nil {
			return err
		}
		if r.Parent != "" {
			return cb.Put(childKey(r.Parent, string(k)), nil)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return moved, lb.m.SetSequence(seq)
}

// syncFolded makes the directories of the folded layers that are still recorded
// durable, before the transaction that makes their records durable commits.
func (s *Store) syncFolded(tx *bolt.Tx, moved []string) error {
	synced := false
	t := &txn{Tx: tx}
	for _, k := range moved {
		r, err := getRecord(t, k)
		if err != nil || !r.HasDir {
			continue // removed in the same transaction, or for Check to report
		}
		dir := s.layerDir(r.ID)
		for _, sub := range []string{"fs", "upper", "work", "whiteouts"} {
			if p := filepath.Join(dir, sub); exists(p) {
				if err := syncDir(p); err != nil {
					return err
				}
			}
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		synced = true
	}
	if synced {
		return syncDir(s.path(layersDir))
	}
	return nil
}

// dropStale deletes from the volatile file (in tx) the records whose IDs are at
// most metaSeq, which meta.db holds already, and with undecodable, the records
// that do not decode, which a fold copies as they are.
func dropStale(tx *bolt.Tx, metaSeq uint64, undecodable bool) error {
	v1 := tx.Bucket(bucketV1)
	if v1 == nil {
		return nil
	}
	lb, ib, cb := v1.Bucket(bucketLayers), v1.Bucket(bucketIDs), v1.Bucket(bucketChildren)
	var keys, ids, children [][]byte
	c := ib.Cursor()
	for k, v := c.First(); k != nil && len(k) == 8 && binary.BigEndian.Uint64(k) <= metaSeq; k, v = c.Next() {
		ids = append(ids, bytes.Clone(k))
		var r record
		if rv := lb.Get(v); rv != nil && json.Unmarshal(rv, &r) == nil && r.ID == binary.BigEndian.Uint64(k) {
			keys = append(keys, bytes.Clone(v))
		}
	}
	if undecodable {
		err := lb.ForEach(func(k, v []byte) error {
			var r record
			if json.Unmarshal(v, &r) != nil || r.ID == 0 {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(keys) == 0 && len(ids) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := lb.Delete(k); err != nil {
			return err
		}
	}
	for _, k := range ids {
		if err := ib.Delete(k); err != nil {
			return err
		}
	}
	gone := map[string]bool{}
	for _, k := range keys {
		gone[string(k)] = true
	}
	err := cb.ForEach(func(k, _ []byte) error {
		_, child, _ := bytes.Cut(k, []byte{0})
		if gone[string(child)] {
			children = append(children, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range children {
		if err := cb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// hasPending says whether the volatile file holds records not yet in meta.db.
func hasPending(vol *bolt.DB) bool {
	pending := false
	vol.View(func(tx *bolt.Tx) error {
		if v1 := tx.Bucket(bucketV1); v1 != nil {
			if lb := v1.Bucket(bucketLayers); lb != nil {
				k, _ := lb.Cursor().First()
				pending = k != nil
			}
		}
		return nil
	})
	return pending
}
