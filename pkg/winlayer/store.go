package winlayer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The metadata database (hcsmeta/layer.db) holds, per entry, the Windows metadata that a
// Linux file cannot: times, attributes, security descriptors, EAs, reparse buffers and the
// list of alternate data streams. Keys are folded names (see foldName), which makes the
// case-insensitive lookups Windows needs a single Get. Security descriptors are stored
// once per distinct value: image layers share a few hundred among many thousand files.
var (
	bucketMeta      = []byte("meta")
	bucketEntries   = []byte("entries")
	bucketSDs       = []byte("securitydescriptors")
	bucketWhiteouts = []byte("whiteouts")

	keySchema     = []byte("schema")
	keyNextStream = []byte("nextstream")
	keyParents    = []byte("parents")
)

const schemaVersion = "1"

// opsPerCommit bounds the dirty pages a write transaction holds in memory.
const opsPerCommit = 4096

type metaStore struct {
	db       *bolt.DB
	tx       *bolt.Tx
	ops      int
	writable bool
}

func createStore(path string) (*metaStore, error) {
	db, err := bolt.Open(path, 0o644, &bolt.Options{
		Timeout:        5 * time.Second,
		NoSync:         true, // the writer syncs the whole staging tree once before commit
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, err
	}
	s := &metaStore{db: db, writable: true}
	if err := s.begin(); err != nil {
		db.Close()
		return nil, err
	}
	for _, b := range [][]byte{bucketMeta, bucketEntries, bucketSDs, bucketWhiteouts} {
		if _, err := s.tx.CreateBucketIfNotExists(b); err != nil {
			s.close()
			return nil, err
		}
	}
	if err := s.tx.Bucket(bucketMeta).Put(keySchema, []byte(schemaVersion)); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func openStore(path string) (*metaStore, error) {
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		return nil, err
	}
	s := &metaStore{db: db}
	if err := s.begin(); err != nil {
		db.Close()
		return nil, err
	}
	meta := s.tx.Bucket(bucketMeta)
	if meta == nil || s.tx.Bucket(bucketEntries) == nil || s.tx.Bucket(bucketSDs) == nil || s.tx.Bucket(bucketWhiteouts) == nil {
		s.close()
		return nil, fmt.Errorf("%w: missing buckets", ErrCorrupt)
	}
	if v := meta.Get(keySchema); string(v) != schemaVersion {
		s.close()
		return nil, fmt.Errorf("%w: schema version %q, want %q", ErrCorrupt, v, schemaVersion)
	}
	return s, nil
}

func (s *metaStore) begin() error {
	tx, err := s.db.Begin(s.writable)
	if err != nil {
		return err
	}
	s.tx = tx
	return nil
}

// tick commits the running write transaction every opsPerCommit changes.
func (s *metaStore) tick() error {
	s.ops++
	if s.ops < opsPerCommit {
		return nil
	}
	s.ops = 0
	if err := s.tx.Commit(); err != nil {
		s.tx = nil
		return err
	}
	return s.begin()
}

func (s *metaStore) get(name string) (*record, error) {
	v := s.tx.Bucket(bucketEntries).Get([]byte(foldName(name)))
	if v == nil {
		return nil, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", name, err)
	}
	return r, nil
}

func (s *metaStore) put(r *record) error {
	if err := s.tx.Bucket(bucketEntries).Put([]byte(foldName(r.entry.Name)), r.encode()); err != nil {
		return err
	}
	return s.tick()
}

func (s *metaStore) delete(name string) error {
	if err := s.tx.Bucket(bucketEntries).Delete([]byte(foldName(name))); err != nil {
		return err
	}
	return s.tick()
}

// deleteBelow removes the records of every name strictly below dir and returns them,
// so their stream files can be removed too.
func (s *metaStore) deleteBelow(dir string) ([]*record, error) {
	prefix := []byte(foldName(dir) + "/")
	c := s.tx.Bucket(bucketEntries).Cursor()
	var gone []*record
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Seek(prefix) {
		r, err := decodeRecord(v)
		if err == nil {
			gone = append(gone, r)
		}
		if err := c.Delete(); err != nil {
			return nil, err
		}
	}
	return gone, nil
}

func (s *metaStore) putSD(sd []byte) ([]byte, error) {
	h := sha256.Sum256(sd)
	b := s.tx.Bucket(bucketSDs)
	if b.Get(h[:]) == nil {
		if err := b.Put(h[:], sd); err != nil {
			return nil, err
		}
	}
	return h[:], nil
}

func (s *metaStore) sd(hash []byte) ([]byte, error) {
	v := s.tx.Bucket(bucketSDs).Get(hash)
	if v == nil {
		return nil, fmt.Errorf("%w: security descriptor %x missing", ErrCorrupt, hash)
	}
	return append([]byte(nil), v...), nil
}

// Whiteouts are keyed by folded parent, a NUL, then the folded base name, so that all
// whiteouts of one directory are adjacent and sort by name.
func whiteoutKey(name string) []byte {
	return []byte(foldName(parentOf(name)) + "\x00" + foldName(baseOf(name)))
}

func (s *metaStore) addWhiteout(name string) error {
	if err := s.tx.Bucket(bucketWhiteouts).Put(whiteoutKey(name), []byte(name)); err != nil {
		return err
	}
	return s.tick()
}

// whiteoutsIn returns the removed names directly inside dir, sorted by folded name.
func (s *metaStore) whiteoutsIn(dir string) []string {
	prefix := []byte(foldName(dir) + "\x00")
	c := s.tx.Bucket(bucketWhiteouts).Cursor()
	var names []string
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		names = append(names, string(v))
	}
	return names
}

// allWhiteouts calls fn for every removed name in key order.
func (s *metaStore) allWhiteouts(fn func(name string) error) error {
	return s.tx.Bucket(bucketWhiteouts).ForEach(func(_, v []byte) error { return fn(string(v)) })
}

func (s *metaStore) nextStreamID() (uint64, error) {
	b := s.tx.Bucket(bucketMeta)
	var n uint64 = 1
	if v := b.Get(keyNextStream); len(v) == 8 {
		n = binary.LittleEndian.Uint64(v)
	}
	if err := b.Put(keyNextStream, binary.LittleEndian.AppendUint64(nil, n+1)); err != nil {
		return 0, err
	}
	return n, nil
}

func (s *metaStore) putMeta(k, v []byte) error { return s.tx.Bucket(bucketMeta).Put(k, v) }

func (s *metaStore) getMeta(k []byte) []byte {
	return append([]byte(nil), s.tx.Bucket(bucketMeta).Get(k)...)
}

// commit ends the write transaction. The file is flushed with the rest of the staging
// folder (one syncfs) before the layer becomes visible.
func (s *metaStore) commit() error {
	err := s.tx.Commit()
	s.tx = nil
	return err
}

func (s *metaStore) close() error {
	if s.tx != nil {
		s.tx.Rollback()
		s.tx = nil
	}
	return s.db.Close()
}
