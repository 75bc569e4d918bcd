package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/hostcompute/hostcompute/internal/mount"
)

// The parent chain index: v1/chains maps the ID of every committed layer to
// the IDs of its line, itself first, then its parent, down to the bottom layer.
// A committed layer's parent never changes, so its entry is written once, in
// the transaction that commits or imports it, and deleted with it. Prepare and
// View read the parent's entry instead of one record per parent: at a hundred
// parents the walk is most of the call's time. The index is a cache: a layer
// without an entry (a store from before it, a line deeper than a union can
// stack) is walked record by record; Check compares every entry with the walk
// and Repair rebuilds them.
var bucketChains = []byte("chains")

// maxChain is the longest line kept: a union over a longer one cannot be
// mounted, and its plan fails whichever way the parents were found.
const maxChain = mount.MaxLowerLayers

// encodeChain packs ids as unsigned varints.
func encodeChain(ids []uint64) []byte {
	b := make([]byte, 0, len(ids)*3)
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

// decodeChain unpacks an entry of v1/chains, false when it is malformed.
func decodeChain(b []byte) ([]uint64, bool) {
	ids := make([]uint64, 0, len(b)/2+1)
	for len(b) > 0 {
		id, n := binary.Uvarint(b)
		if n <= 0 || id == 0 || len(ids) == maxChain {
			return nil, false
		}
		ids = append(ids, id)
		b = b[n:]
	}
	return ids, len(ids) > 0
}

// chainsBucket is meta.db's v1/chains, nil in a store opened before it exists.
func chainsBucket(tx *txn) *bolt.Bucket {
	v1 := tx.Bucket(bucketV1)
	if v1 == nil {
		return nil
	}
	return v1.Bucket(bucketChains)
}

// cachedChain returns the line of the committed layer id from the index, false
// when there is no usable entry.
func cachedChain(tx *txn, id uint64) ([]uint64, bool) {
	cb := chainsBucket(tx)
	if cb == nil {
		return nil, false
	}
	ids, ok := decodeChain(cb.Get(idKey(id)))
	if !ok || ids[0] != id {
		return nil, false
	}
	return ids, true
}

// putChain writes the index entry of the committed layer r, whose parent's
// record (and entry, when it has one) is in tx. A line too long to stack gets
// no entry.
func putChain(tx *txn, r *record) error {
	cb := chainsBucket(tx)
	if cb == nil {
		return nil
	}
	ids := []uint64{r.ID}
	if r.Parent != "" {
		_, line, err := parentChain(tx, r.Parent)
		if err != nil {
			return fmt.Errorf("parent chain of %q: %w", r.Key, err)
		}
		ids = append(ids, line...)
	}
	if len(ids) > maxChain {
		return cb.Delete(idKey(r.ID))
	}
	return cb.Put(idKey(r.ID), encodeChain(ids))
}

// deleteChain deletes the index entry of layer id, if it has one.
func deleteChain(tx *txn, id uint64) error {
	if cb := chainsBucket(tx); cb != nil {
		return cb.Delete(idKey(id))
	}
	return nil
}

// linesOf returns the line (as the index keeps it) of every committed layer of
// recs whose line can be followed through recs and stacked, by ID.
func linesOf(recs map[string]*record) map[uint64][]uint64 {
	lines := map[uint64][]uint64{}
	var line func(r *record, depth int) []uint64
	line = func(r *record, depth int) []uint64 {
		if l, ok := lines[r.ID]; ok {
			return l
		}
		if depth > len(recs) { // a loop
			return nil
		}
		l := []uint64{r.ID}
		if r.Parent != "" {
			p := recs[r.Parent]
			if p == nil || p.Kind != KindCommitted {
				return nil
			}
			pl := line(p, depth+1)
			if pl == nil {
				return nil
			}
			l = append(l, pl...)
		}
		if len(l) > maxChain {
			return nil
		}
		lines[r.ID] = l
		return l
	}
	for _, r := range recs {
		if r.Kind == KindCommitted {
			line(r, 0)
		}
	}
	return lines
}

// committedRecords reads the records of meta.db's committed layers (the only
// kind that has lines), skipping those that do not decode.
func committedRecords(tx *txn) map[string]*record {
	recs := map[string]*record{}
	tx.Bucket(bucketV1).Bucket(bucketLayers).ForEach(func(k, v []byte) error {
		if r, err := decodeRecord(string(k), v); err == nil && r.Kind == KindCommitted {
			recs[r.Key] = r
		}
		return nil
	})
	return recs
}

// rebuildChains replaces the index with the lines of recs.
func rebuildChains(tx *txn, recs map[string]*record) error {
	v1 := tx.Bucket(bucketV1)
	if v1.Bucket(bucketChains) != nil {
		if err := v1.DeleteBucket(bucketChains); err != nil {
			return err
		}
	}
	cb, err := v1.CreateBucket(bucketChains)
	if err != nil {
		return err
	}
	for id, l := range linesOf(recs) {
		if err := cb.Put(idKey(id), encodeChain(l)); err != nil {
			return err
		}
	}
	return nil
}

// checkChains compares the index with the lines of recs.
func checkChains(tx *txn, recs map[string]*record) ([]Problem, error) {
	cb := chainsBucket(tx)
	if cb == nil {
		return []Problem{{Kind: ProblemIndex, Detail: "no parent chain index", Repair: "indexes rebuilt"}}, nil
	}
	want := linesOf(recs)
	byID := make(map[uint64]string, len(recs))
	for k, r := range recs {
		byID[r.ID] = k
	}
	var ps []Problem
	seen := map[uint64]bool{}
	err := cb.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			ps = append(ps, Problem{Kind: ProblemIndex, Detail: fmt.Sprintf("parent chain index entry under key %x", k), Repair: "indexes rebuilt"})
			return nil
		}
		id := binary.BigEndian.Uint64(k)
		seen[id] = true
		got, ok := decodeChain(v)
		w, known := want[id]
		switch {
		case !known:
			ps = append(ps, Problem{Kind: ProblemIndex, Key: byID[id], Detail: fmt.Sprintf("parent chain index entry for ID %d, which is no committed layer", id), Repair: "indexes rebuilt"})
		case !ok || !slices.Equal(got, w):
			ps = append(ps, Problem{Kind: ProblemIndex, Key: byID[id], Detail: fmt.Sprintf("parent chain index entry for ID %d disagrees with the records (%v, want %v)", id, got, w), Repair: "indexes rebuilt"})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for id := range want {
		if !seen[id] {
			ps = append(ps, Problem{Kind: ProblemIndex, Key: byID[id], Detail: fmt.Sprintf("committed layer ID %d has no parent chain index entry", id), Repair: "indexes rebuilt"})
		}
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return ps, nil
}
