package dmverity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
)

const (
	// BlockSize is the data and hash block size this package hashes with, the one
	// hcsshim and veritysetup use by default.
	BlockSize = 4096
	// DigestSize is the size of a SHA-256 digest.
	DigestSize = sha256.Size
	// hashesPerBlock is how many digests one hash block holds.
	hashesPerBlock = BlockSize / DigestSize
	// chunkSize is how much data one worker hashes at a time: a whole number of
	// level-0 hash blocks (128 data blocks each), so chunks never share one.
	chunkSize = 1 << 20
	// maxWorkers bounds the hashing goroutines; beyond a few the reader is the limit.
	maxWorkers = 8
)

// layout is the shape of the tree for a number of data blocks.
type layout struct {
	dataBlocks int64
	// blocks[i] is the number of hash blocks of level i; level 0 hashes the data
	// and the last level is the single top block.
	blocks []int64
	// offset[i] is the byte offset of level i from the start of the tree, which
	// holds the levels top first.
	offset []int64
	// size is the size of the tree in bytes.
	size int64
}

func newLayout(dataBlocks int64, hcsshim bool) layout {
	l := layout{dataBlocks: dataBlocks}
	// A single data block has no tree in dm-verity (the kernel and veritysetup
	// count levels while (data_blocks-1) >> (7*levels) is not zero): the root is
	// that block's digest. hcsshim still writes one level-0 block for it.
	for n := dataBlocks; n > 1 || hcsshim && len(l.blocks) == 0; {
		n = (n + hashesPerBlock - 1) / hashesPerBlock
		l.blocks = append(l.blocks, n)
	}
	l.offset = make([]int64, len(l.blocks))
	var off int64
	for i := len(l.blocks) - 1; i >= 0; i-- {
		l.offset[i] = off
		off += l.blocks[i] * BlockSize
	}
	l.size = off
	return l
}

func (l layout) top() int { return len(l.blocks) - 1 }

// sink receives every hash block of the tree once, as it is completed: level 0
// in runs of consecutive blocks, the higher levels one block at a time. blocks is
// only valid during the call.
type sink func(level int, index int64, blocks []byte) error

// chunk is one piece of data in flight between the reader, a worker and the
// collector, with the level-0 hash blocks computed from it.
type chunk struct {
	data    []byte
	n       int    // valid bytes of data
	hashes  []byte // level-0 hash blocks for this chunk
	nhash   int    // hash blocks used in hashes
	digests []byte // digest of each of those hash blocks, for level 1
	first   int64  // level-0 index of hashes[0]
	have    []bool // per data block: its digest is already in hashes (with a Level0)
	done    chan struct{}
	err     error
}

// builder hashes data and assembles the tree. Levels above 0 are built by the
// collector goroutine only; each keeps just the block it is filling.
type builder struct {
	salt    []byte
	lay     layout
	workers int
	out     sink

	// With a Level0 (pre): digests of the first known data blocks, those marked
	// in stale excepted; the other blocks are read from ra.
	pre   *Level0
	known int64
	stale []uint64
	ra    io.ReaderAt
	dig   []byte // the known digests of one chunk

	pend [][]byte // per level ≥ 1: block being filled
	fill []int    // bytes used in pend
	next []int64  // index of the next block of each level
	root []byte
}

func newBuilder(lay layout, salt []byte, workers int, out sink) *builder {
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	b := &builder{salt: salt, lay: lay, workers: workers, out: out}
	n := len(lay.blocks)
	b.pend = make([][]byte, n)
	for i := 1; i < n; i++ {
		b.pend[i] = make([]byte, BlockSize)
	}
	b.fill = make([]int, n)
	b.next = make([]int64, n)
	return b
}

// hashBlock appends SHA-256(salt ‖ block) to dst[:0] using h.
func hashBlock(h hash.Hash, salt, block, dst []byte) {
	h.Reset()
	h.Write(salt)
	h.Write(block)
	h.Sum(dst[:0])
}

// run reads dataSize bytes from r and builds the tree, returning the root hash.
func (b *builder) run(ctx context.Context, r io.Reader, dataSize int64) ([]byte, error) {
	pool := b.workers + 2
	free := make(chan *chunk, pool)
	for range pool {
		free <- &chunk{
			data:    make([]byte, chunkSize),
			hashes:  make([]byte, chunkSize/hashesPerBlock),
			digests: make([]byte, chunkSize/hashesPerBlock/BlockSize*DigestSize),
		}
	}
	order := make(chan *chunk, pool) // chunks in data order, for the collector
	work := make(chan *chunk, pool)  // chunks to hash, for the workers
	stop := make(chan struct{})
	var wg sync.WaitGroup

	wg.Go(func() {
		defer close(order)
		defer close(work)
		for off := int64(0); off < dataSize; off += chunkSize {
			var c *chunk
			select {
			case c = <-free:
			case <-stop:
				return
			}
			c.n = int(min(chunkSize, dataSize-off))
			c.first = off / BlockSize / hashesPerBlock
			c.done = make(chan struct{})
			c.err = ctx.Err()
			if c.err == nil && b.pre != nil {
				c.err = b.fillKnown(c, off)
			} else if c.err == nil {
				if n, err := io.ReadFull(r, c.data[:c.n]); err != nil {
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						err = fmt.Errorf("%w: data ends at byte %d, before the size %d", ErrShortData, off+int64(n), dataSize)
					} else {
						err = fmt.Errorf("dmverity: reading data at byte %d: %w", off+int64(n), err)
					}
					c.err = err
				}
			}
			order <- c
			if c.err != nil {
				close(c.done)
				return
			}
			work <- c
		}
	})
	for range b.workers {
		wg.Go(func() {
			h := sha256.New()
			for c := range work {
				b.hashChunk(h, c)
				close(c.done)
			}
		})
	}

	err := b.collect(order, free)
	if err != nil {
		close(stop)
		for c := range order { // let the reader and workers finish
			<-c.done
		}
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	return b.finish()
}

// fillKnown copies the known digests of the chunk at off into c.hashes and reads
// the other blocks, in runs, from b.ra.
func (b *builder) fillKnown(c *chunk, off int64) error {
	nblocks := c.n / BlockSize
	if c.have == nil {
		c.have = make([]bool, chunkSize/BlockSize)
	}
	first := off / BlockSize
	known := b.known
	if k := min(int64(nblocks), known-first); k > 0 {
		if cap(b.dig) < int(k)*DigestSize {
			b.dig = make([]byte, chunkSize/BlockSize*DigestSize)
		}
		b.dig = b.dig[:k*DigestSize]
		if err := b.pre.readDigests(b.dig, first); err != nil {
			return err
		}
	}
	for i := range nblocks {
		g := first + int64(i)
		c.have[i] = g < known && b.stale[g/64]&(1<<(g%64)) == 0
		if c.have[i] {
			copy(c.hashes[i*DigestSize:(i+1)*DigestSize], b.dig[i*DigestSize:])
		}
	}
	for i := 0; i < nblocks; {
		if c.have[i] {
			i++
			continue
		}
		j := i
		for j < nblocks && !c.have[j] {
			j++
		}
		at := off + int64(i)*BlockSize
		n, err := b.ra.ReadAt(c.data[i*BlockSize:j*BlockSize], at)
		if n < (j-i)*BlockSize {
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: data ends at byte %d, before the size %d", ErrShortData, at+int64(n), b.lay.dataBlocks*BlockSize)
			}
			return fmt.Errorf("dmverity: reading data at byte %d: %w", at+int64(n), err)
		}
		i = j
	}
	return nil
}

// hashChunk computes the level-0 hash blocks of a chunk and their digests.
func (b *builder) hashChunk(h hash.Hash, c *chunk) {
	nblocks := c.n / BlockSize
	for i := range nblocks {
		if c.have != nil && c.have[i] {
			continue
		}
		hashBlock(h, b.salt, c.data[i*BlockSize:(i+1)*BlockSize], c.hashes[i*DigestSize:])
	}
	c.nhash = (nblocks + hashesPerBlock - 1) / hashesPerBlock
	clear(c.hashes[nblocks*DigestSize : c.nhash*BlockSize])
	for j := range c.nhash {
		hashBlock(h, b.salt, c.hashes[j*BlockSize:(j+1)*BlockSize], c.digests[j*DigestSize:])
	}
}

// collect takes the hashed chunks in data order, hands their level-0 blocks to
// the sink and feeds their digests to level 1.
func (b *builder) collect(order <-chan *chunk, free chan<- *chunk) error {
	for c := range order {
		<-c.done
		if c.err != nil {
			return c.err
		}
		if b.lay.top() < 0 { // a single data block: its digest is the root
			b.root = append([]byte(nil), c.hashes[:DigestSize]...)
			free <- c
			continue
		}
		if c.first+int64(c.nhash) > b.lay.blocks[0] {
			return fmt.Errorf("dmverity: internal error: level 0 overflows %d blocks", b.lay.blocks[0])
		}
		if b.out != nil {
			if err := b.out(0, c.first, c.hashes[:c.nhash*BlockSize]); err != nil {
				return err
			}
		}
		b.next[0] = c.first + int64(c.nhash)
		for j := range c.nhash {
			d := c.digests[j*DigestSize : (j+1)*DigestSize]
			if b.lay.top() == 0 {
				b.root = append([]byte(nil), d...)
			} else if err := b.push(1, d); err != nil {
				return err
			}
		}
		free <- c
	}
	return nil
}

// push adds a digest to level (≥ 1), writing the level's block when it is full.
func (b *builder) push(level int, digest []byte) error {
	copy(b.pend[level][b.fill[level]:], digest)
	b.fill[level] += DigestSize
	if b.fill[level] == BlockSize {
		return b.flush(level)
	}
	return nil
}

// flush zero-pads the block being filled at level, hands it to the sink and
// pushes its digest one level up (or makes it the root).
func (b *builder) flush(level int) error {
	p := b.pend[level]
	clear(p[b.fill[level]:])
	idx := b.next[level]
	if idx >= b.lay.blocks[level] {
		return fmt.Errorf("dmverity: internal error: level %d overflows %d blocks", level, b.lay.blocks[level])
	}
	b.next[level]++
	b.fill[level] = 0
	if b.out != nil {
		if err := b.out(level, idx, p); err != nil {
			return err
		}
	}
	d := sha256.New()
	d.Write(b.salt)
	d.Write(p)
	sum := d.Sum(nil)
	if level == b.lay.top() {
		b.root = sum
		return nil
	}
	return b.push(level+1, sum)
}

// finish flushes the partly filled blocks, lowest level first, and checks that
// every level got the number of blocks the layout says.
func (b *builder) finish() ([]byte, error) {
	for level := 1; level <= b.lay.top(); level++ {
		if b.fill[level] > 0 {
			if err := b.flush(level); err != nil {
				return nil, err
			}
		}
	}
	for level, n := range b.lay.blocks {
		if b.next[level] != n {
			return nil, fmt.Errorf("dmverity: internal error: level %d has %d blocks, want %d", level, b.next[level], n)
		}
	}
	return b.root, nil
}

func newHash() hash.Hash { return sha256.New() }
