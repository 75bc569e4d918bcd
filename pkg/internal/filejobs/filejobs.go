//go:build unix

// Package filejobs makes small files on worker goroutines for the layer writers
// (winlayer.Writer, ocilayer.Apply).
//
// Creating a file is most of what unpacking a layer costs: the kernel's open
// with O_CREAT, the write, the metadata calls and the close. One goroutine
// doing all of it leaves the other processors idle. A writer stays sequential
// — its validator, its records and every directory are handled in entry order
// on the caller's goroutine — and hands a file whose data is complete, in a
// directory that exists, to a Pool. Whatever looks at or changes files already
// handed over (a name given again, a hard link, a removal, the end) calls Wait
// first, so the result is the one a sequential writer gives.
//
// Memory is bounded: at most Queue files of at most MaxSize bytes wait.
package filejobs

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MaxSize is the largest file a writer should hand over: its data is held in
// memory until a worker has written it. Larger files stream to disk as their
// data comes, on the caller's goroutine.
const MaxSize = 256 << 10

// Queue bounds the files waiting for a worker, and with MaxSize the memory
// they hold: 64 × 256 KiB = 16 MiB at most.
const Queue = 64

// Dir is a directory descriptor shared by a writer's cache of open directories
// and the files being made in it: it is closed when the last holder lets go.
type Dir struct {
	fd    int
	refs  atomic.Int32
	owned bool // closed at the last Release
}

// NewDir wraps fd, held once by the caller. With owned the last Release closes
// it; otherwise the caller closes it after Wait.
func NewDir(fd int, owned bool) *Dir {
	d := &Dir{fd: fd, owned: owned}
	d.refs.Store(1)
	return d
}

// FD returns the descriptor.
func (d *Dir) FD() int { return d.fd }

// Hold takes one more reference and returns d.
func (d *Dir) Hold() *Dir { d.refs.Add(1); return d }

// Release lets go of one reference.
func (d *Dir) Release() {
	if d.refs.Add(-1) == 0 && d.owned {
		unix.Close(d.fd)
	}
}

// Job is one file to make: Base in Dir (which the job holds once and releases
// when done), opened with O_CREAT|O_EXCL|O_NOFOLLOW and permissions Perm, Data
// written, then Meta (if set) called with the open descriptor before it is
// closed, and Times (if set: access, modification) given to it after. A failure
// is passed to Fail, whose result Wait and Failure report.
type Job struct {
	Dir   *Dir
	Base  string
	Perm  uint32
	Data  []byte
	Buf   *[]byte // Data's buffer from Buffer, given back when done; may be nil
	Meta  func(fd int) error
	Times *[2]unix.Timespec
	Fail  func(error) error
}

// Pool runs the jobs.
type Pool struct {
	jobs    chan *Job
	pending sync.WaitGroup
	stopped sync.WaitGroup
	failed  atomic.Bool
	mu      sync.Mutex
	err     error
}

// New starts a Pool, or returns nil on a single processor, where workers
// would add hand-offs and nothing else.
func New() *Pool {
	n := min(runtime.GOMAXPROCS(0), 4)
	if n < 2 {
		return nil
	}
	p := &Pool{jobs: make(chan *Job, Queue)}
	p.stopped.Add(n)
	for range n {
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	defer p.stopped.Done()
	for j := range p.jobs {
		if !p.failed.Load() {
			if err := makeFile(j); err != nil {
				if j.Fail != nil {
					err = j.Fail(err)
				}
				p.mu.Lock()
				if p.err == nil {
					p.err = err
				}
				p.mu.Unlock()
				p.failed.Store(true)
			}
		}
		j.Dir.Release()
		PutBuffer(j.Buf)
		p.pending.Done()
	}
}

func makeFile(j *Job) error {
	fd, err := unix.Openat(j.Dir.fd, j.Base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, j.Perm)
	if err != nil {
		return err
	}
	for b := j.Data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		b = b[n:]
	}
	if j.Meta != nil {
		if err := j.Meta(fd); err != nil {
			unix.Close(fd)
			return err
		}
	}
	if err := unix.Close(fd); err != nil {
		return err
	}
	if j.Times != nil {
		return unix.UtimesNanoAt(j.Dir.fd, j.Base, j.Times[:], unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// Submit hands j to a worker; it blocks while Queue jobs wait.
func (p *Pool) Submit(j *Job) {
	p.pending.Add(1)
	p.jobs <- j
}

// Wait waits until every job handed over is done and returns the first
// failure.
func (p *Pool) Wait() error {
	p.pending.Wait()
	return p.Failure()
}

// Failure returns the first failure so far, without waiting.
func (p *Pool) Failure() error {
	if !p.failed.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop waits for the jobs handed over and ends the workers. With discard the
// jobs not yet started are dropped (their output is going away).
func (p *Pool) Stop(discard bool) {
	if discard {
		p.failed.Store(true)
	}
	close(p.jobs)
	p.stopped.Wait()
}

// Buffers for small files' data, by size class, so that unpacking many small
// files does not allocate each one's data anew.
var bufferClasses = [...]int{4 << 10, 32 << 10, MaxSize}

var bufferPools [len(bufferClasses)]sync.Pool

// Buffer returns a zeroed buffer of len size (a file written with gaps reads
// zeros there), for PutBuffer or a Job's Buf.
func Buffer(size int) *[]byte {
	for i, c := range bufferClasses {
		if size <= c {
			b, ok := bufferPools[i].Get().(*[]byte)
			if !ok {
				nb := make([]byte, c)
				b = &nb
			}
			*b = (*b)[:size]
			clear(*b)
			return b
		}
	}
	b := make([]byte, size)
	return &b
}

// PutBuffer gives back a buffer from Buffer; nil is ignored.
func PutBuffer(b *[]byte) {
	if b == nil {
		return
	}
	for i, c := range bufferClasses {
		if cap(*b) == c {
			*b = (*b)[:c]
			bufferPools[i].Put(b)
			return
		}
	}
}
