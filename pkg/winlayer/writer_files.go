//go:build unix

package winlayer

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Small files are created on worker goroutines. Creating a file is most of an
// import's time (the kernel's open with O_CREAT, the write, the close and the
// times), and one goroutine doing all of it leaves the other processors idle
// while GNU tar, on one, keeps pace. The Writer itself stays sequential: the
// Validator, the records and every directory are handled in entry order on the
// caller's goroutine; a worker only makes one file in a directory that exists,
// with data that is complete. Anything that looks at or changes files already
// handed to a worker (a name given again, a hard link, a removal, the commit)
// waits for the workers first, so the layer is the same as a sequential
// writer's, byte for byte and record for record.

// asyncFileMax is the largest file handed to a worker: its data is held in
// memory until the worker has written it. Larger files go the sequential way,
// where their data streams to the file as it comes.
const asyncFileMax = 256 << 10

// asyncQueue bounds the files waiting for a worker, and with asyncFileMax the
// memory they hold: 64 × 256 KiB = 16 MiB at most.
const asyncQueue = 64

// dirRef is a directory fd shared by the Writer's cache and the files being
// made in it: closed when the last holder lets go.
type dirRef struct {
	fd   int
	refs atomic.Int32
	root bool // the staging root: closed by the Writer itself
}

func newDirRef(fd int) *dirRef {
	d := &dirRef{fd: fd}
	d.refs.Store(1)
	return d
}

func (d *dirRef) hold() *dirRef { d.refs.Add(1); return d }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 && !d.root {
		unix.Close(d.fd)
	}
}

// fileJob is one small file for a worker to make.
type fileJob struct {
	dir   *dirRef
	base  string
	name  string // the entry, for errors
	data  []byte
	buf   *[]byte // the pooled buffer data is in
	times [2]unix.Timespec
}

// fileWorkers make small files; the first failure is kept for the Writer to
// report.
type fileWorkers struct {
	layer   string
	jobs    chan *fileJob
	pending sync.WaitGroup // jobs handed over and not yet done
	stopped sync.WaitGroup // the workers
	mu      sync.Mutex
	err     error
	failed  atomic.Bool
}

// newFileWorkers starts the workers, or returns nil on a single processor
// (where they would only add hand-offs).
func newFileWorkers(layer string) *fileWorkers {
	n := min(runtime.GOMAXPROCS(0), 4)
	if n < 2 {
		return nil
	}
	fw := &fileWorkers{layer: layer, jobs: make(chan *fileJob, asyncQueue)}
	fw.stopped.Add(n)
	for range n {
		go fw.work()
	}
	return fw
}

func (fw *fileWorkers) work() {
	defer fw.stopped.Done()
	for j := range fw.jobs {
		if !fw.failed.Load() {
			if err := makeFile(j); err != nil {
				fw.mu.Lock()
				if fw.err == nil {
					fw.err = &EntryError{Layer: fw.layer, Entry: j.name, Op: "write", Err: err}
				}
				fw.mu.Unlock()
				fw.failed.Store(true)
			}
		}
		j.dir.release()
		putBuffer(j.buf)
		fw.pending.Done()
	}
}

// makeFile creates j's file, writes its data and sets its times.
func makeFile(j *fileJob) error {
	fd, err := unix.Openat(j.dir.fd, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	for p := j.data; len(p) > 0; {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		p = p[n:]
	}
	if err := unix.Close(fd); err != nil {
		return err
	}
	unix.UtimesNanoAt(j.dir.fd, j.base, j.times[:], unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

// submit hands j to a worker.
func (fw *fileWorkers) submit(j *fileJob) {
	fw.pending.Add(1)
	fw.jobs <- j
}

// wait waits until every file handed over is made and returns the first
// failure.
func (fw *fileWorkers) wait() error {
	fw.pending.Wait()
	return fw.failure()
}

// failure returns the first failure so far, without waiting.
func (fw *fileWorkers) failure() error {
	if !fw.failed.Load() {
		return nil
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.err
}

// stop ends the workers once the files handed over are made.
func (fw *fileWorkers) stop() {
	close(fw.jobs)
	fw.stopped.Wait()
}

// Buffers for small files' data, by size class, so that an import of many
// small files does not allocate each one's data anew.
var bufferClasses = [...]int{4 << 10, 32 << 10, asyncFileMax}

var bufferPools [len(bufferClasses)]sync.Pool

// getBuffer returns a buffer of len size, zeroed (a file written with gaps
// reads zeros there).
func getBuffer(size int) *[]byte {
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

func putBuffer(b *[]byte) {
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
