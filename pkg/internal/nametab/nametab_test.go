package nametab

import (
	"fmt"
	"testing"
)

func TestTable(t *testing.T) {
	tb := New()
	const n = 300000 // spills: more than a MiB of names
	name := func(i int) string { return fmt.Sprintf("Files/dir%04d/some-longer-file-name-%07d.txt", i/100, i) }
	for i := range n {
		s := name(i)
		if j := tb.Lookup(tb.Hash(s), func(x string) bool { return x == s }); j >= 0 {
			t.Fatalf("%s found before insert", s)
		}
		if j := tb.Insert(tb.Hash(s), s, uint8(i)); j != i {
			t.Fatalf("insert %d returned %d", i, j)
		}
	}
	if tb.arena.f == nil {
		t.Fatal("no spill file")
	}
	for i := range n {
		s := name(i)
		j := tb.Lookup(tb.Hash(s), func(x string) bool { return x == s })
		if j != i || tb.Flags(j) != uint8(i) || tb.Name(j) != s {
			t.Fatalf("lookup %s: %d flags %d name %q", s, j, tb.Flags(j), tb.Name(j))
		}
	}
	tb.SetName(7, "Files/DIR0000/x")
	tb.SetFlags(7, 200)
	if tb.Name(7) != "Files/DIR0000/x" || tb.Flags(7) != 200 || tb.Name(8) != name(8) {
		t.Fatal("SetName/SetFlags")
	}
	count := 0
	tb.Each(func(i int, s string) { count++ })
	if count != n || tb.Len() != n || tb.Err() != nil {
		t.Fatal(count, tb.Len(), tb.Err())
	}
}

// Colliding hashes: every name under one hash must still be found by its name.
func TestCollisions(t *testing.T) {
	tb := New()
	for i := range 100 {
		s := fmt.Sprint(i)
		if tb.Lookup(42, func(x string) bool { return x == s }) >= 0 {
			t.Fatal("found")
		}
		tb.Insert(42, s, 0)
	}
	for i := range 100 {
		s := fmt.Sprint(i)
		if j := tb.Lookup(42, func(x string) bool { return x == s }); j != i {
			t.Fatal(s, j)
		}
	}
}

func TestEachSpilled(t *testing.T) {
	tb := New()
	var want []string
	for i := range 100000 {
		s := fmt.Sprintf("usr/lib/d%03d/name-%d", i%977, i)
		want = append(want, s)
		tb.Insert(tb.Hash(s), s, 1)
	}
	tb.SetName(3, "usr/lib/d003/renamed") // a record whose bytes moved to the end
	want[3] = "usr/lib/d003/renamed"
	i := 0
	tb.Each(func(j int, s string) {
		if j != i || s != want[i] {
			t.Fatalf("record %d (%d): %q, want %q", j, i, s, want[i])
		}
		i++
	})
	if i != len(want) || tb.Err() != nil {
		t.Fatal(i, tb.Err())
	}
}
