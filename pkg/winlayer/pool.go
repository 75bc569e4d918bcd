package winlayer

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/bufpool"
)

// Small files are the bulk of an image layer, and creating them is mostly kernel work.
// The Writer therefore hands each small file, with its whole content, to a few worker
// goroutines that create, fill and date it, while the caller goes on decoding the
// next entries. Everything that depends on a file existing (replacing a name, hard
// links, removals) first waits for the files in flight (drain). The contents travel in
// a fixed set of reused buffers, which bounds the memory in flight.
const (
	smallFileMax = 1 << 20
	poolBuffers  = 40
)

type fileJob struct {
	dirFD int // a duplicate of the directory fd, closed by the worker
	base  string
	name  string
	data  []byte
	times [2]unix.Timespec
}

type filePool struct {
	jobs chan *fileJob
	wg   sync.WaitGroup // running workers

	bufs *bufpool.Pool

	mu       sync.Mutex
	cond     *sync.Cond // signalled when a job finishes
	pending  int        // jobs submitted and not finished
	inflight map[string]struct{}
	err      error // first failure of a worker
}

func newFilePool() *filePool {
	p := &filePool{jobs: make(chan *fileJob, poolBuffers), inflight: map[string]struct{}{}, bufs: bufpool.New(poolBuffers, smallFileMax)}
	p.cond = sync.NewCond(&p.mu)
	n := min(max(runtime.NumCPU(), 2), 4)
	p.wg.Add(n)
	for i := 0; i < n; i++ {
		go p.work()
	}
	return p
}

func (p *filePool) work() {
	defer p.wg.Done()
	for j := range p.jobs {
		err := writeSmallFile(j)
		unix.Close(j.dirFD)
		p.mu.Lock()
		if err != nil && p.err == nil {
			p.err = fmt.Errorf("writing %s: %w", j.name, err)
		}
		p.pending--
		delete(p.inflight, foldName(j.name))
		p.cond.Broadcast()
		p.mu.Unlock()
		p.bufs.Put(j.data)
	}
}

func writeSmallFile(j *fileJob) error {
	fd, err := unix.Openat(j.dirFD, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	for b := j.data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			unix.Close(fd)
			return err
		}
		b = b[n:]
	}
	if err := unix.UtimesNanoAt(fd, "", j.times[:], unix.AT_EMPTY_PATH); err != nil {
		// Dates are for people browsing Files/; the metadata holds the real ones.
		_ = err
	}
	return unix.Close(fd)
}

// submit queues a job whose data came from p.bufs.
func (p *filePool) submit(j *fileJob) error {
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		unix.Close(j.dirFD)
		p.bufs.Put(j.data)
		return err
	}
	p.pending++
	p.inflight[foldName(j.name)] = struct{}{}
	p.mu.Unlock()
	p.jobs <- j
	return nil
}

// busy reports whether name is still being written.
func (p *filePool) busy(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.inflight[foldName(name)]
	return ok
}

// drain waits until every submitted file is written and returns the first failure.
func (p *filePool) drain() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending > 0 {
		p.cond.Wait()
	}
	return p.err
}

// stop drains and ends the workers.
func (p *filePool) stop() error {
	err := p.drain()
	close(p.jobs)
	p.wg.Wait()
	return err
}
