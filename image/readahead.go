package image

import (
	"io"
	"sync"
)

// readAhead reads r on a goroutine of its own into a few fixed buffers, so that
// decompressing a layer overlaps applying it (two cores instead of one). Memory
// is bounded: at most bufs buffers of size bytes. Close stops the goroutine.
type readAhead struct {
	full   chan *chunk
	free   chan *chunk
	cur    *chunk
	done   chan struct{}
	exited chan struct{}
	once   sync.Once
	err    error // after full is closed
	errMu  sync.Mutex
}

type chunk struct {
	b   []byte
	n   int
	off int
}

func newReadAhead(r io.Reader, bufs, size int) *readAhead {
	ra := &readAhead{full: make(chan *chunk, bufs), free: make(chan *chunk, bufs), done: make(chan struct{}), exited: make(chan struct{})}
	for i := 0; i < bufs; i++ {
		ra.free <- &chunk{b: make([]byte, size)}
	}
	go func() {
		defer close(ra.exited)
		defer close(ra.full)
		for {
			var c *chunk
			select {
			case c = <-ra.free:
			case <-ra.done:
				return
			}
			n, err := io.ReadFull(r, c.b)
			if n > 0 {
				c.n, c.off = n, 0
				select {
				case ra.full <- c:
				case <-ra.done:
					return
				}
			}
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			if err != nil {
				ra.errMu.Lock()
				ra.err = err
				ra.errMu.Unlock()
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if ra.cur == nil {
		c, ok := <-ra.full
		if !ok {
			ra.errMu.Lock()
			defer ra.errMu.Unlock()
			return 0, ra.err
		}
		ra.cur = c
	}
	n := copy(p, ra.cur.b[ra.cur.off:ra.cur.n])
	ra.cur.off += n
	if ra.cur.off == ra.cur.n {
		ra.free <- ra.cur
		ra.cur = nil
	}
	return n, nil
}

// Close stops reading ahead and waits until the source is no longer read (so the
// caller may close it); it does not close the source.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.done) })
	<-ra.exited
	return nil
}
