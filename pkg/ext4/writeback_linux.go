package ext4

import kernelwb "github.com/hostcompute/hostcompute/pkg/internal/writeback"

// writeback starts the kernel's writeback of regions of the output as they are
// written, when the output is a file. The image is written once, sequentially, and
// callers sync it at the end: starting writeback early overlaps the disk writes with
// reading the tar, so the final sync has little left to do. sync_file_range can block
// while the device queue is full, so it runs on its own goroutine.
type writeback struct {
	fd   int
	ch   chan [2]int64
	done chan struct{}
}

func newWriteback(out Output) *writeback {
	f, ok := out.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	wb := &writeback{fd: int(f.Fd()), ch: make(chan [2]int64, 64), done: make(chan struct{})}
	go func() {
		defer close(wb.done)
		for r := range wb.ch {
			kernelwb.Start(wb.fd, r[0], r[1])
		}
	}()
	return wb
}

// start queues a region; it never blocks the writer (a full queue drops the request:
// the final sync writes that region anyway).
func (wb *writeback) start(off, n int64) {
	if wb == nil {
		return
	}
	select {
	case wb.ch <- [2]int64{off, n}:
	default:
	}
}

// stop waits for the queued requests.
func (wb *writeback) stop() {
	if wb == nil {
		return
	}
	close(wb.ch)
	<-wb.done
}
