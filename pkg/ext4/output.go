package ext4

import (
	"fmt"
	"io"
)

// Output is where an image is written: *os.File satisfies it. The image starts at
// offset 0; Build truncates the output to 0 first and to the image size at the end.
type Output interface {
	io.WriterAt
	Truncate(size int64) error
}

// outBuf collects the image's sequential writes in a large buffer and hands them to
// the output with one WriteAt per buffer, so file data costs one copy from the tar
// reader and one system call per few MiB. Regions never written (skipped zeros) stay
// holes of the truncated output file.
type outBuf struct {
	out Output
	buf []byte
	off int64 // file offset of buf[0]
	max int64 // the image may not grow past this offset
	wb  *writeback
	obs WriteObserver // nil when nobody watches
	end int64         // end of the last region handed to obs.Written
}

// The buffer starts small, so that small images cost little, and doubles up to
// outBufSize. Both are multiples of blockSize.
const (
	outBufStart = 64 << 10
	outBufSize  = 4 << 20
)

func newOutBuf(out Output, start, max int64) *outBuf {
	return &outBuf{out: out, buf: make([]byte, 0, outBufStart), off: start, max: max, wb: newWriteback(out)}
}

// pos is the offset of the next sequential write.
func (o *outBuf) pos() int64 { return o.off + int64(len(o.buf)) }

// block is the block number of the next sequential write; the position is block
// aligned whenever this is called.
func (o *outBuf) block() uint32 { return uint32(o.pos() / blockSize) }

func (o *outBuf) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	if _, err := o.out.WriteAt(o.buf, o.off); err != nil {
		return fmt.Errorf("writing image at offset %d: %w", o.off, err)
	}
	o.wb.start(o.off, int64(len(o.buf)))
	if o.obs != nil {
		// Offsets only grow, so this is a rewrite only if a caller ever seeks back.
		if o.off < o.end {
			o.obs.Rewritten(o.off, int64(len(o.buf)))
		} else {
			o.obs.Written(o.off, o.buf)
			o.end = o.off + int64(len(o.buf))
		}
	}
	o.off += int64(len(o.buf))
	if len(o.buf) == cap(o.buf) && cap(o.buf) < outBufSize {
		o.buf = make([]byte, 0, 2*cap(o.buf))
	}
	o.buf = o.buf[:0]
	return nil
}

func (o *outBuf) grow(n int64) error {
	if o.pos()+n > o.max {
		return fmt.Errorf("%w: image would exceed %d bytes", ErrTooLarge, o.max)
	}
	return nil
}

// write appends b.
func (o *outBuf) write(b []byte) error {
	if err := o.grow(int64(len(b))); err != nil {
		return err
	}
	return o.put(b)
}

func (o *outBuf) put(b []byte) error {
	for len(b) > 0 {
		if len(o.buf) == cap(o.buf) {
			if err := o.flush(); err != nil {
				return err
			}
		}
		n := copy(o.buf[len(o.buf):cap(o.buf)], b)
		o.buf = o.buf[:len(o.buf)+n]
		b = b[n:]
	}
	return nil
}

// space returns the free tail of the buffer, flushing first if it is full, so that a
// caller can read file data straight into it and then commit a prefix.
func (o *outBuf) space() ([]byte, error) {
	if len(o.buf) == cap(o.buf) {
		if err := o.flush(); err != nil {
			return nil, err
		}
	}
	return o.buf[len(o.buf):cap(o.buf)], nil
}

// commit appends the first n bytes of the slice returned by space.
func (o *outBuf) commit(n int) { o.buf = o.buf[:len(o.buf)+n] }

// skip appends n zero bytes without writing them: the output was truncated, so the
// region reads as zeros (and stays a hole).
func (o *outBuf) skip(n int64) error {
	if n == 0 {
		return nil
	}
	if err := o.grow(n); err != nil {
		return err
	}
	if n < 64<<10 {
		return o.put(make([]byte, n))
	}
	if err := o.flush(); err != nil {
		return err
	}
	o.off += n
	return nil
}

// padBlock appends zeros up to the next block boundary.
func (o *outBuf) padBlock() error {
	if r := o.pos() % blockSize; r != 0 {
		return o.write(make([]byte, blockSize-r))
	}
	return nil
}

// writeAt overwrites an earlier region of the image.
func (o *outBuf) writeAt(b []byte, off int64) error {
	if off >= o.off {
		copy(o.buf[off-o.off:], b)
		return nil
	}
	if off+int64(len(b)) > o.off {
		if err := o.flush(); err != nil {
			return err
		}
	}
	if _, err := o.out.WriteAt(b, off); err != nil {
		return fmt.Errorf("writing image at offset %d: %w", off, err)
	}
	if o.obs != nil {
		o.obs.Rewritten(off, int64(len(b)))
	}
	return nil
}
