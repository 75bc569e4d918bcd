package cimfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// The writer keeps what grows with the image (the name tree, file records, the
// deduplication table, object ID lists) in files of its staging folder rather
// than on the heap, so its memory stays bounded whatever the input's size: the
// page cache holds what is hot, and the heap holds only fixed-size buffers, the
// file being written and, at Close, one directory's listing at a time.

// spillFile is an append-only temporary file written through a buffer and read
// back with pread.
type spillFile struct {
	f       *os.File
	buf     []byte
	flushed int64
	err     error
}

const spillBufferSize = 256 << 10

func newSpillFile(path string) (*spillFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &spillFile{f: f, buf: make([]byte, 0, spillBufferSize)}, nil
}

// size returns the number of bytes appended.
func (s *spillFile) size() int64 { return s.flushed + int64(len(s.buf)) }

// append adds b at the end and returns its offset.
func (s *spillFile) append(b []byte) int64 {
	off := s.size()
	if s.err != nil {
		return off
	}
	for len(b) > 0 {
		if len(s.buf) == cap(s.buf) {
			s.flush()
		}
		c := copy(s.buf[len(s.buf):cap(s.buf)], b)
		s.buf = s.buf[:len(s.buf)+c]
		b = b[c:]
	}
	return off
}

func (s *spillFile) flush() error {
	if s.err == nil && len(s.buf) > 0 {
		_, s.err = s.f.WriteAt(s.buf, s.flushed)
		s.flushed += int64(len(s.buf))
		s.buf = s.buf[:0]
	}
	return s.err
}

// readAt reads len(p) bytes at off, which must lie within what was appended.
func (s *spillFile) readAt(p []byte, off int64) error {
	if off+int64(len(p)) > s.flushed {
		if err := s.flush(); err != nil {
			return err
		}
	}
	_, err := s.f.ReadAt(p, off)
	return err
}

// reader returns a sequential reader of everything appended.
func (s *spillFile) reader() (io.Reader, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	return io.NewSectionReader(s.f, 0, s.flushed), nil
}

func (s *spillFile) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
		s.f = nil
	}
}

// diskArray is an array of fixed-size slots in a sparse temporary file, read and
// written in place; slots never written read as zeros.
// Slot sizes divide the page size, so a slot never spans two pages.
type diskArray struct {
	f    *os.File
	c    *pageCache
	slot int64
}

func newDiskArray(c *pageCache, path string, slot int) (*diskArray, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &diskArray{f: f, c: c, slot: int64(slot)}, nil
}

func (a *diskArray) get(i uint64, p []byte) error {
	return a.c.readAt(a.f, p[:a.slot], int64(i)*a.slot)
}

func (a *diskArray) put(i uint64, p []byte) error {
	return a.c.writeAt(a.f, p[:a.slot], int64(i)*a.slot)
}

// putAt writes p at byte off within slot i.
func (a *diskArray) putAt(i uint64, off int, p []byte) error {
	return a.c.writeAt(a.f, p, int64(i)*a.slot+int64(off))
}

// getAt reads p from byte off within slot i.
func (a *diskArray) getAt(i uint64, off int, p []byte) error {
	return a.c.readAt(a.f, p, int64(i)*a.slot+int64(off))
}

func (a *diskArray) getUint64(i uint64) (uint64, error) {
	var b [8]byte
	if a.slot != 8 {
		panic("cimfs: getUint64 of a wide slot")
	}
	err := a.get(i, b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

func (a *diskArray) putUint64(i uint64, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return a.put(i, b[:])
}

func (a *diskArray) close() {
	if a != nil && a.f != nil {
		a.c.drop(a.f)
		a.f.Close()
		os.Remove(a.f.Name())
		a.f = nil
	}
}

// diskHash is an open-addressing hash table (linear probing) in a temporary
// file, mapping 24-byte keys (SHA-256 prefixes, as collision-free as the object
// IDs the format itself relies on) to two uint64 values. It doubles, rehashing
// into a new file, when half full.
type diskHash struct {
	path  string
	f     *os.File
	c     *pageCache
	slots uint64 // a power of two
	used  uint64 // live slots and tombstones
	gen   int
}

const (
	hashSlotSize  = 64 // key 24, a 8, b 8, state 8, unused 16
	hashBlock     = 4096
	hashPerBlock  = hashBlock / hashSlotSize
	hashInitSlots = 1 << 14

	slotEmpty = 0
	slotLive  = 1
	slotDead  = 2
)

type hashKey [24]byte

func newDiskHash(c *pageCache, path string) (*diskHash, error) {
	h := &diskHash{path: path, c: c, slots: hashInitSlots}
	f, err := os.OpenFile(h.fileName(), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	h.f = f
	return h, nil
}

func (h *diskHash) fileName() string { return fmt.Sprintf("%s.%d", h.path, h.gen) }

func (h *diskHash) home(k *hashKey) uint64 {
	return binary.LittleEndian.Uint64(k[:8]) & (h.slots - 1)
}

// probe calls fn for each slot from k's home on, a block at a time, until fn
// returns true; it returns the index of that slot.
func (h *diskHash) probe(k *hashKey, fn func(i uint64, s []byte) bool) (uint64, error) {
	i := h.home(k)
	for n := uint64(0); n < h.slots; {
		start := i &^ (hashPerBlock - 1)
		p, err := h.c.get(h.f, int64(start/hashPerBlock), false)
		if err != nil {
			return 0, err
		}
		b := p.data[:]
		for j := i - start; j < hashPerBlock; j++ {
			s := b[j*hashSlotSize : (j+1)*hashSlotSize]
			if fn(start+j, s) {
				return start + j, nil
			}
			n++
		}
		i = (start + hashPerBlock) & (h.slots - 1)
	}
	return 0, fmt.Errorf("cimfs: spill hash table full")
}

// get returns the values of k.
func (h *diskHash) get(k *hashKey) (a, b uint64, ok bool, err error) {
	_, err = h.probe(k, func(i uint64, s []byte) bool {
		st := binary.LittleEndian.Uint64(s[40:])
		if st == slotEmpty {
			return true
		}
		if st == slotLive && [24]byte(s[:24]) == *k {
			a, b, ok = binary.LittleEndian.Uint64(s[24:]), binary.LittleEndian.Uint64(s[32:]), true
			return true
		}
		return false
	})
	return
}

// put sets the values of k, replacing what it had; with onlyNew it keeps an
// existing entry and reports false.
func (h *diskHash) put(k *hashKey, a, b uint64, onlyNew bool) (bool, error) {
	if err := h.grow(); err != nil {
		return false, err
	}
	target, found := uint64(0), false
	haveTomb := false
	i, err := h.probe(k, func(i uint64, s []byte) bool {
		st := binary.LittleEndian.Uint64(s[40:])
		switch {
		case st == slotEmpty:
			return true
		case st == slotLive && [24]byte(s[:24]) == *k:
			found = true
			return true
		case st == slotDead && !haveTomb:
			target, haveTomb = i, true
		}
		return false
	})
	if err != nil {
		return false, err
	}
	if found && onlyNew {
		return false, nil
	}
	if found || !haveTomb {
		target = i
	}
	if !found && !haveTomb {
		h.used++
	}
	var s [hashSlotSize]byte
	copy(s[:24], k[:])
	binary.LittleEndian.PutUint64(s[24:], a)
	binary.LittleEndian.PutUint64(s[32:], b)
	binary.LittleEndian.PutUint64(s[40:], slotLive)
	return true, h.c.writeAt(h.f, s[:], int64(target)*hashSlotSize)
}

// remove deletes k, leaving a tombstone.
func (h *diskHash) remove(k *hashKey) error {
	var at uint64
	found := false
	_, err := h.probe(k, func(i uint64, s []byte) bool {
		st := binary.LittleEndian.Uint64(s[40:])
		if st == slotEmpty {
			return true
		}
		if st == slotLive && [24]byte(s[:24]) == *k {
			at, found = i, true
			return true
		}
		return false
	})
	if err != nil || !found {
		return err
	}
	var st [8]byte
	binary.LittleEndian.PutUint64(st[:], slotDead)
	return h.c.writeAt(h.f, st[:], int64(at)*hashSlotSize+40)
}

// grow doubles the table when it is half full, copying the live slots.
func (h *diskHash) grow() error {
	if h.used+1 <= h.slots/2 {
		return nil
	}
	old, oldSlots := h.f, h.slots
	h.gen++
	f, err := os.OpenFile(h.fileName(), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		h.gen--
		return err
	}
	h.f, h.slots, h.used = f, oldSlots*2, 0
	blk := make([]byte, hashBlock)
	for start := uint64(0); start < oldSlots; start += hashPerBlock {
		// A copy: inserting below may evict the page.
		p, err := h.c.get(old, int64(start/hashPerBlock), false)
		if err != nil {
			return err
		}
		copy(blk, p.data[:])
		for j := 0; j < hashPerBlock; j++ {
			s := blk[j*hashSlotSize : (j+1)*hashSlotSize]
			if binary.LittleEndian.Uint64(s[40:]) != slotLive {
				continue
			}
			k := hashKey(s[:24])
			if _, err := h.put(&k, binary.LittleEndian.Uint64(s[24:]), binary.LittleEndian.Uint64(s[32:]), false); err != nil {
				return err
			}
		}
	}
	h.c.drop(old)
	old.Close()
	os.Remove(old.Name())
	return nil
}

func (h *diskHash) close() {
	if h != nil && h.f != nil {
		h.c.drop(h.f)
		h.f.Close()
		os.Remove(h.f.Name())
		h.f = nil
	}
}

// readBlock fills b from f at off; what lies beyond the end of f reads as zeros.
func readBlock(f *os.File, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if err == io.EOF {
		clear(b[n:])
		err = nil
	}
	return err
}
