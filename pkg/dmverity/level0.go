package dmverity

import (
	"bytes"
	"fmt"
	"hash"
	"os"
	"runtime"
	"sync"
)

// DefaultLevel0Limit is the amount of data whose digests a Level0 made with limit 0
// keeps: 16 TiB of data, the most a tree of this package covers in practice. Data
// past it is read back by AppendLevel0.
const DefaultLevel0Limit = 16 << 40

// level0Mem is the most digest bytes a Level0 holds in memory (the digests of
// 128 MiB of data); older ones go to an unlinked temporary file. Tests lower it.
var level0Mem = 1 << 20

// Level0 computes the digests of data blocks while a producer writes them, so that
// AppendLevel0 builds the tree without reading the data back. The producer reports
// the bytes it writes in increasing offsets (Written) and the regions it changes
// afterwards (Rewritten); bytes it never reports are taken as zeros, as in a file
// truncated to 0 and grown. Rewritten blocks, and blocks past the limit, are read
// back from the file. It implements ext4.WriteObserver.
//
// Memory: the digests (32 bytes per 4096-byte block) of the last 128 MiB of data;
// the older ones spill to an unlinked temporary file, read back once by
// AppendLevel0. The methods are not safe for concurrent use.
type Level0 struct {
	salt    []byte
	max     int64      // most blocks with a digest
	digests []byte     // digests of blocks spilled/DigestSize.. in memory
	spilled int64      // digest bytes in f: those of the first blocks
	f       *os.File   // spilled digests, or nil
	err     error      // the first error of f
	carry   []byte     // the partly written block after them
	end     int64      // end of the last Written region
	dirty   [][2]int64 // rewritten byte ranges: offset, length
	full    bool       // max reached: later bytes are not hashed
	hs      []hash.Hash
}

// spill moves the digests in memory to the file once they are level0Mem bytes.
func (l *Level0) spill() {
	if len(l.digests) < level0Mem || l.err != nil {
		return
	}
	if l.f == nil {
		f, err := os.CreateTemp("", "dmverity-level0-*")
		if err != nil {
			l.err = fmt.Errorf("dmverity: level-0 digests: %w", err)
			return
		}
		if os.Remove(f.Name()) != nil {
			name := f.Name() // not removable while open (Windows)
			runtime.AddCleanup(l, func(f *os.File) { f.Close(); os.Remove(name) }, f)
		} else {
			runtime.AddCleanup(l, func(f *os.File) { f.Close() }, f)
		}
		l.f = f
	}
	if _, err := l.f.WriteAt(l.digests, l.spilled); err != nil {
		l.err = fmt.Errorf("dmverity: level-0 digests: %w", err)
		return
	}
	l.spilled += int64(len(l.digests))
	l.digests = l.digests[:0]
}

// readDigests copies the digests of blocks first.. into dst (which they must fill,
// all below blocks()).
func (l *Level0) readDigests(dst []byte, first int64) error {
	off := first * DigestSize
	if off < l.spilled {
		n := min(int64(len(dst)), l.spilled-off)
		if _, err := l.f.ReadAt(dst[:n], off); err != nil {
			return fmt.Errorf("dmverity: reading back level-0 digests: %w", err)
		}
		dst, off = dst[n:], off+n
	}
	if len(dst) > 0 {
		copy(dst, l.digests[off-l.spilled:])
	}
	return nil
}

// NewLevel0 returns a Level0 hashing with p's salt; AppendLevel0 must get the
// same salt. limit is the data size (bytes) whose digests are kept, 0 for
// DefaultLevel0Limit.
func NewLevel0(p Params, limit int64) (*Level0, error) {
	salt, err := p.salt()
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, fmt.Errorf("%w: level-0 limit %d", ErrInvalidParams, limit)
	}
	if limit == 0 {
		limit = DefaultLevel0Limit
	}
	workers := min(runtime.GOMAXPROCS(0), maxWorkers)
	if p.Workers > 0 {
		workers = p.Workers
	}
	l := &Level0{salt: salt, max: limit / BlockSize, carry: make([]byte, 0, BlockSize)}
	for range workers {
		l.hs = append(l.hs, newHash())
	}
	return l, nil
}

func (l *Level0) blocks() int64 { return (l.spilled + int64(len(l.digests))) / DigestSize }

// pos is the offset up to which bytes have been taken in.
func (l *Level0) pos() int64 { return l.blocks()*BlockSize + int64(len(l.carry)) }

// Written takes in b, the bytes at off. Offsets must grow: bytes at or before the
// end of an earlier region count as rewritten, and bytes skipped over as zeros.
func (l *Level0) Written(off int64, b []byte) {
	if len(b) == 0 {
		return
	}
	if off < l.end {
		// Not in order: whatever was taken in for these bytes is stale.
		l.Rewritten(off, int64(len(b)))
		if off+int64(len(b)) <= l.end {
			return
		}
		cut := l.end - off
		off, b = l.end, b[cut:]
	}
	l.end = off + int64(len(b))
	if l.full {
		return
	}
	l.zeros(off - l.pos())
	l.take(b)
}

// Rewritten records that the n bytes at off changed after Written saw them.
func (l *Level0) Rewritten(off, n int64) {
	if n > 0 {
		l.dirty = append(l.dirty, [2]int64{off, n})
	}
}

// zeros takes in n zero bytes.
func (l *Level0) zeros(n int64) {
	if n <= 0 || l.full {
		return
	}
	if len(l.carry) > 0 {
		k := min(n, int64(BlockSize-len(l.carry)))
		l.carry = append(l.carry, make([]byte, k)...)
		n -= k
		l.flushCarry()
	}
	if full := n / BlockSize; full > 0 && !l.full {
		var zero [BlockSize]byte
		d := make([]byte, DigestSize)
		hashBlock(l.hs[0], l.salt, zero[:], d)
		full = min(full, l.max-l.blocks())
		for range full {
			l.digests = append(l.digests, d...)
			l.spill()
		}
		n -= full * BlockSize
		l.checkFull()
	}
	if !l.full && n > 0 {
		l.carry = append(l.carry, make([]byte, n)...)
	}
}

// take takes in data, hashing its whole blocks on up to len(l.hs) goroutines.
func (l *Level0) take(b []byte) {
	if len(l.carry) > 0 {
		k := copy(l.carry[len(l.carry):BlockSize], b)
		l.carry = l.carry[:len(l.carry)+k]
		b = b[k:]
		l.flushCarry()
		if len(l.carry) > 0 || l.full {
			return
		}
	}
	nb := min(int64(len(b)/BlockSize), l.max-l.blocks())
	if nb > 0 {
		first := len(l.digests)
		l.digests = append(l.digests, make([]byte, nb*DigestSize)...)
		l.hashBlocks(b[:nb*BlockSize], l.digests[first:])
		l.spill()
		b = b[nb*BlockSize:]
		l.checkFull()
	}
	if !l.full {
		l.carry = append(l.carry, b...)
	}
}

// hashBlocks writes the digest of each block of data to out, splitting large
// runs between goroutines.
func (l *Level0) hashBlocks(data, out []byte) {
	nb := len(data) / BlockSize
	parts := min(len(l.hs), nb/64) // below 256 KiB a part is not worth a goroutine
	if parts <= 1 {
		hashRun(l.hs[0], l.salt, data, out)
		return
	}
	var wg sync.WaitGroup
	per := (nb + parts - 1) / parts
	for i := range parts {
		from, to := i*per, min((i+1)*per, nb)
		if from >= to {
			break
		}
		h := l.hs[i]
		wg.Go(func() {
			hashRun(h, l.salt, data[from*BlockSize:to*BlockSize], out[from*DigestSize:to*DigestSize])
		})
	}
	wg.Wait()
}

func hashRun(h hash.Hash, salt, data, out []byte) {
	for i := range len(data) / BlockSize {
		hashBlock(h, salt, data[i*BlockSize:(i+1)*BlockSize], out[i*DigestSize:])
	}
}

// flushCarry hashes the carried block once it is whole.
func (l *Level0) flushCarry() {
	if len(l.carry) < BlockSize {
		return
	}
	if l.blocks() < l.max {
		l.digests = append(l.digests, make([]byte, DigestSize)...)
		hashBlock(l.hs[0], l.salt, l.carry, l.digests[len(l.digests)-DigestSize:])
		l.spill()
	}
	l.carry = l.carry[:0]
	l.checkFull()
}

func (l *Level0) checkFull() {
	if l.blocks() >= l.max {
		l.full, l.carry = true, l.carry[:0]
	}
}

// known returns how many of the first blocks of dataSize bytes have a digest
// (readDigests gives them), after taking in the zeros up to dataSize, and a bitmap
// of the blocks among them that were rewritten.
func (l *Level0) known(dataSize int64) (n int64, stale []uint64, err error) {
	l.zeros(dataSize - l.pos())
	n = min(l.blocks(), dataSize/BlockSize)
	stale = make([]uint64, (n+63)/64)
	for _, r := range l.dirty {
		if r[0] >= n*BlockSize {
			continue
		}
		last := min((r[0]+r[1]-1)/BlockSize, n-1)
		for b := r[0] / BlockSize; b <= last; b++ {
			stale[b/64] |= 1 << (b % 64)
		}
	}
	return n, stale, l.err
}

func (l *Level0) sameSalt(salt []byte) bool { return bytes.Equal(l.salt, salt) }
