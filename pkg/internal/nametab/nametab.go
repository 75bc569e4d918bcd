// Package nametab is a set of names with a few bits of state each, for the layer
// validators, whose tables must stay small however many names a layer holds.
//
// The table keeps per name one 8-byte record (where its bytes are, their length,
// its state) and a slot of 8 bytes (a 32-bit tag of its key hash and the record's
// index) in an open-addressed index: about 20 bytes per name, whatever its length.
// The bytes of the names go to an append-only arena: its last MiB in memory, the
// rest in an unlinked temporary file, read back only to confirm that a key whose
// hash matches is the one looked for. Callers spare most of those reads by
// remembering the records they looked up last (the ancestors of the previous
// entry, in a tar).
package nametab

import (
	"fmt"
	"hash/maphash"
	"os"
	"runtime"
)

const (
	flagBits  = 8
	lenBits   = 20
	offBits   = 64 - flagBits - lenBits
	maxLen    = 1<<lenBits - 1
	maxOff    = 1<<offBits - 1
	chunkRecs = 1 << 16
	bufSize   = 1 << 20
)

// MaxName is the longest name a Table holds (1 MiB - 1, the most a tar header
// gives).
const MaxName = maxLen

// Table is a set of names, each with 8 bits of state, looked up by a caller's key
// hash. It is not safe for concurrent use.
type Table struct {
	seed  maphash.Seed
	slots []uint64   // tag<<32 | index+1; 0 is empty
	recs  [][]uint64 // off<<(lenBits+flagBits) | len<<flagBits | flags, in chunks
	n     int
	arena *arena
	err   error // the first error of the spill file; names read back as ""
}

// New returns an empty Table.
func New() *Table {
	return &Table{seed: maphash.MakeSeed(), slots: make([]uint64, 64), arena: &arena{}}
}

// Hash is the hash of a key, for Lookup and Insert.
func (t *Table) Hash(key string) uint64 { return maphash.String(t.seed, key) }

// Len is the number of names.
func (t *Table) Len() int { return t.n }

// Err is the first error of the spill file: after one, names read back empty (so
// that lookups miss), which a caller should report.
func (t *Table) Err() error { return t.err }

func (t *Table) rec(i int) *uint64 { return &t.recs[i/chunkRecs][i%chunkRecs] }

// Flags returns the state of record i.
func (t *Table) Flags(i int) uint8 { return uint8(*t.rec(i)) }

// SetFlags sets the state of record i.
func (t *Table) SetFlags(i int, f uint8) {
	r := t.rec(i)
	*r = *r&^0xff | uint64(f)
}

// Name returns the name of record i (read back from the spill file when it is
// no longer in memory).
func (t *Table) Name(i int) string {
	r := *t.rec(i)
	n := int(r >> flagBits & maxLen)
	s, err := t.arena.read(int64(r>>(flagBits+lenBits)), n)
	if err != nil && t.err == nil {
		t.err = err
	}
	return s
}

// SetName replaces the name of record i; its key (and so its hash) must stay the
// same.
func (t *Table) SetName(i int, name string) {
	r := t.rec(i)
	*r = t.pack(name, uint8(*r))
}

func (t *Table) pack(name string, flags uint8) uint64 {
	if len(name) > maxLen {
		panic(fmt.Sprintf("nametab: name of %d bytes", len(name)))
	}
	off, err := t.arena.add(name)
	if err != nil && t.err == nil {
		t.err = err
	}
	if off > maxOff {
		panic("nametab: arena full")
	}
	return uint64(off)<<(flagBits+lenBits) | uint64(len(name))<<flagBits | uint64(flags)
}

// Lookup returns the record whose key has hash h and for whose name match is
// true, or -1. match is called only for names whose hash tag equals h's.
func (t *Table) Lookup(h uint64, match func(name string) bool) int {
	tag := h >> 32
	mask := uint64(len(t.slots) - 1)
	for p := tag & mask; ; p = (p + 1) & mask {
		s := t.slots[p]
		if s == 0 {
			return -1
		}
		if s>>32 == tag {
			i := int(uint32(s)) - 1
			if match(t.Name(i)) {
				return i
			}
		}
	}
}

// Insert adds a name whose key has hash h (the caller has checked that it is not
// there) and returns its record.
func (t *Table) Insert(h uint64, name string, flags uint8) int {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	i := t.n
	if i%chunkRecs == 0 {
		t.recs = append(t.recs, make([]uint64, chunkRecs))
	}
	*t.rec(i) = t.pack(name, flags)
	t.n++
	t.place(h>>32<<32 | uint64(i+1))
	return i
}

// place puts a slot at the first free place from its tag on.
func (t *Table) place(s uint64) {
	mask := uint64(len(t.slots) - 1)
	p := s >> 32 & mask
	for t.slots[p] != 0 {
		p = (p + 1) & mask
	}
	t.slots[p] = s
}

func (t *Table) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	for _, s := range old {
		if s != 0 {
			t.place(s)
		}
	}
}

// Each calls f with every record and its name, in the order they were inserted.
// It reads the spilled names in large sequential pieces, not one by one.
func (t *Table) Each(f func(i int, name string)) {
	var win []byte
	var winOff int64 = -1
	for i := range t.n {
		r := *t.rec(i)
		off, n := int64(r>>(flagBits+lenBits)), int64(r>>flagBits&maxLen)
		if off >= t.arena.flushed || t.arena.f == nil {
			f(i, t.Name(i))
			continue
		}
		if winOff < 0 || off < winOff || off+n > winOff+int64(len(win)) {
			size := min(max(n, bufSize), t.arena.flushed-off)
			if cap(win) < int(size) {
				win = make([]byte, size)
			}
			win = win[:size]
			if _, err := t.arena.f.ReadAt(win, off); err != nil {
				if t.err == nil {
					t.err = fmt.Errorf("nametab: reading back names: %w", err)
				}
				return
			}
			winOff = off
		}
		f(i, string(win[off-winOff:off-winOff+n]))
	}
}

// arena holds the bytes of names: the last bufSize bytes in memory, the others in
// an unlinked temporary file.
type arena struct {
	buf     []byte
	flushed int64 // bytes in the file; buf holds those from here on
	f       *os.File
}

func (a *arena) add(s string) (int64, error) {
	var err error
	if len(a.buf)+len(s) > bufSize && len(a.buf) > 0 {
		err = a.flush()
	}
	off := a.flushed + int64(len(a.buf))
	a.buf = append(a.buf, s...)
	return off, err
}

func (a *arena) flush() error {
	if a.f == nil {
		f, err := os.CreateTemp("", "nametab-*")
		if err != nil {
			return err
		}
		if os.Remove(f.Name()) != nil {
			// Not removable while open (Windows): remove it once it is closed.
			name := f.Name()
			runtime.AddCleanup(a, func(f *os.File) { f.Close(); os.Remove(name) }, f)
		} else {
			runtime.AddCleanup(a, func(f *os.File) { f.Close() }, f)
		}
		a.f = f
	}
	n, err := a.f.WriteAt(a.buf, a.flushed)
	a.flushed += int64(n)
	a.buf = a.buf[:0]
	return err
}

func (a *arena) read(off int64, n int) (string, error) {
	if off >= a.flushed {
		b := a.buf[off-a.flushed:]
		return string(b[:n]), nil
	}
	if a.f == nil {
		return "", fmt.Errorf("nametab: name at %d lost", off)
	}
	b := make([]byte, n)
	if _, err := a.f.ReadAt(b, off); err != nil {
		return "", fmt.Errorf("nametab: reading back names: %w", err)
	}
	return string(b), nil
}
