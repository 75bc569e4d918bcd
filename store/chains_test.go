package store

import (
	"context"
	"slices"
	"strconv"
	"testing"
)

// walkLine is the line of key from its records alone, as the index should hold it.
func walkLine(t *testing.T, s *Store, key string) []uint64 {
	t.Helper()
	var ids []uint64
	err := s.view(context.Background(), func(tx *txn) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		ps, err := chain(tx, r.Parent)
		ids = append([]uint64{r.ID}, idsOf(ps)...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func indexedLine(t *testing.T, s *Store, key string) ([]uint64, bool) {
	t.Helper()
	var ids []uint64
	var ok bool
	err := s.view(context.Background(), func(tx *txn) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		ids, ok = cachedChain(tx, r.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, ok
}

func viewLowers(t *testing.T, s *Store, key, parent string) string {
	t.Helper()
	ctx := context.Background()
	ms, err := s.View(ctx, key, parent)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove(ctx, key)
	if len(ms) != 1 {
		t.Fatalf("view %s: %d mounts", key, len(ms))
	}
	return ms[0].Source + " " + ms[0].Type + " " + joinOptions(ms[0].Options)
}

func joinOptions(o []string) string {
	s := ""
	for _, x := range o {
		s += x + ";"
	}
	return s
}

func checkKinds(t *testing.T, s *Store) []string {
	t.Helper()
	ps, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, p := range ps {
		kinds = append(kinds, p.Kind+": "+p.Detail)
	}
	return kinds
}

// TestParentChainIndex checks that every committed layer's line is indexed as
// its records say, that Prepare and View give the same mounts with the index
// and without it, that a store without the index gets it at Open, and that
// Check finds, and Repair mends, a damaged entry.
func TestParentChainIndex(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	const n = 12
	parent := ""
	for i := range n {
		key := "L" + strconv.Itoa(i)
		if _, err := s.Prepare(ctx, key+"-active", parent); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, key, key+"-active"); err != nil {
			t.Fatal(err)
		}
		parent = key
	}
	for i := range n {
		key := "L" + strconv.Itoa(i)
		got, ok := indexedLine(t, s, key)
		if want := walkLine(t, s, key); !ok || !slices.Equal(got, want) {
			t.Fatalf("%s: indexed line %v (%v), records say %v", key, got, ok, want)
		}
	}
	if ks := checkKinds(t, s); len(ks) > 0 {
		t.Fatalf("check of a new store: %v", ks)
	}
	withIndex := viewLowers(t, s, "v", "L11")

	// A store from before the index: the walk gives the same mounts, and the
	// next Open builds the index.
	err = s.update(ctx, func(tx *txn) error { return tx.Bucket(bucketV1).DeleteBucket(bucketChains) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := viewLowers(t, s, "v", "L11"); got != withIndex {
		t.Fatalf("view without the index:\n%s\nwith it:\n%s", got, withIndex)
	}
	if ks := checkKinds(t, s); len(ks) != 1 {
		t.Fatalf("check without the index: %v", ks)
	}
	s.Close()
	if s, err = Open(ctx, root); err != nil {
		t.Fatal(err)
	}
	if got, ok := indexedLine(t, s, "L11"); !ok || !slices.Equal(got, walkLine(t, s, "L11")) {
		t.Fatalf("after Open, L11's indexed line is %v (%v)", got, ok)
	}
	if ks := checkKinds(t, s); len(ks) > 0 {
		t.Fatalf("check after Open built the index: %v", ks)
	}

	// A damaged entry: two parents swapped.
	var l5 uint64
	err = s.update(ctx, func(tx *txn) error {
		r, err := getRecord(tx, "L5")
		if err != nil {
			return err
		}
		l5 = r.ID
		line, _ := cachedChain(tx, r.ID)
		line[1], line[2] = line[2], line[1]
		return chainsBucket(tx).Put(idKey(r.ID), encodeChain(line))
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ks := checkKinds(t, s); len(ks) != 1 {
		t.Fatalf("check of a swapped entry of ID %d: %v", l5, ks)
	}
	done, err := s.Repair(ctx)
	if err != nil || len(done) != 1 || done[0].Kind != ProblemIndex {
		t.Fatalf("repair: %v, %v", done, err)
	}
	if ks := checkKinds(t, s); len(ks) > 0 {
		t.Fatalf("check after repair: %v", ks)
	}
	if got := viewLowers(t, s, "v", "L11"); got != withIndex {
		t.Fatalf("view after repair:\n%s\nbefore:\n%s", got, withIndex)
	}

	// Removing a layer removes its entry.
	var top uint64
	s.view(ctx, func(tx *txn) error {
		r, err := getRecord(tx, "L11")
		if err == nil {
			top = r.ID
		}
		return err
	})
	if err := s.Remove(ctx, "L11"); err != nil {
		t.Fatal(err)
	}
	s.view(ctx, func(tx *txn) error {
		if v := chainsBucket(tx).Get(idKey(top)); v != nil {
			t.Errorf("entry of removed layer ID %d: %x", top, v)
		}
		return nil
	})
	if ks := checkKinds(t, s); len(ks) > 0 {
		t.Fatalf("check after remove: %v", ks)
	}
}

// TestLinesOf checks the index's lines on records alone: lines longer than a
// union can stack get none, nor do layers above them, and a loop ends.
func TestLinesOf(t *testing.T) {
	recs := map[string]*record{}
	parent := ""
	for i := range maxChain + 5 {
		key := "L" + strconv.Itoa(i)
		recs[key] = &record{ID: uint64(i + 1), Info: Info{Key: key, Parent: parent, Kind: KindCommitted}}
		parent = key
	}
	recs["active"] = &record{ID: 10000, Info: Info{Key: "active", Parent: "L3", Kind: KindActive}}
	recs["a"] = &record{ID: 20000, Info: Info{Key: "a", Parent: "b", Kind: KindCommitted}}
	recs["b"] = &record{ID: 20001, Info: Info{Key: "b", Parent: "a", Kind: KindCommitted}}
	lines := linesOf(recs)
	if len(lines) != maxChain {
		t.Fatalf("%d lines, want %d", len(lines), maxChain)
	}
	for id, l := range lines {
		if int(id) != len(l) || l[0] != id || l[len(l)-1] != 1 {
			t.Fatalf("line of %d: %v", id, l)
		}
		got, ok := decodeChain(encodeChain(l))
		if !ok || !slices.Equal(got, l) {
			t.Fatalf("line of %d round trip: %v", id, got)
		}
	}
	long := make([]uint64, maxChain+1)
	for i := range long {
		long[i] = uint64(i + 1)
	}
	if _, ok := decodeChain(encodeChain(long)); ok {
		t.Fatalf("decodeChain took a line of %d", len(long))
	}
	for _, bad := range [][]byte{nil, {0}, {0x80}, {1, 0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		if ids, ok := decodeChain(bad); ok {
			t.Errorf("decodeChain(%x) = %v", bad, ids)
		}
	}
}

func FuzzDecodeChain(f *testing.F) {
	f.Add([]byte{1})
	f.Add(encodeChain([]uint64{300, 2, 1}))
	f.Add(encodeChain([]uint64{1 << 62, 1 << 40, 7}))
	f.Add([]byte{0x81, 0x00})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, ok := decodeChain(b)
		if !ok {
			return
		}
		if len(ids) == 0 || len(ids) > maxChain || slices.Contains(ids, 0) {
			t.Fatalf("decodeChain(%x) = %v", b, ids)
		}
		again, ok := decodeChain(encodeChain(ids))
		if !ok || !slices.Equal(again, ids) {
			t.Fatalf("round trip of %v: %v", ids, again)
		}
	})
}
