// Package bufpool keeps a fixed set of equal-sized buffers for data in flight between
// goroutines. The buffers are allocated once and reused, so streaming a layer does not
// churn the heap: on virtual machines whose hypervisor reclaims freed memory, touching
// fresh memory costs far more than reusing warm pages. Get blocks while every buffer is
// in use, which also bounds the memory in flight.
package bufpool

// Pool is a fixed set of buffers. It is safe for concurrent use.
type Pool struct {
	size int
	free chan []byte
}

// New makes a pool of n buffers of size bytes each; they are allocated on first use.
func New(n, size int) *Pool {
	p := &Pool{size: size, free: make(chan []byte, n)}
	for i := 0; i < n; i++ {
		p.free <- nil
	}
	return p
}

// Size is the capacity of every buffer.
func (p *Pool) Size() int { return p.size }

// Get returns a buffer of length n (at most Size), waiting for one to be free.
func (p *Pool) Get(n int) []byte {
	b := <-p.free
	if b == nil {
		b = make([]byte, p.size)
	}
	return b[:n]
}

// Put returns a buffer obtained from Get.
func (p *Pool) Put(b []byte) {
	p.free <- b[:cap(b)]
}
