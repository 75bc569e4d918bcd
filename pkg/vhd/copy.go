package vhd

import (
	"fmt"
	"os"
)

// CopyFrom writes the n bytes of src at srcOff to the virtual disk at off, as
// WriteAt would, but moves the data with copy_file_range(2), inside the kernel,
// where the disk stores the range as contiguous bytes of its file: a fixed VHD,
// and the blocks of a fixed or dynamic VHDX (allocated as needed). Elsewhere, and
// when the file systems do not support it, the data goes through a buffer.
// Unlike WriteAt, a dynamic disk allocates blocks for ranges of zeros too: the
// caller skips those.
func (d *Disk) CopyFrom(src *os.File, srcOff, off, n int64) error {
	if d.readOnly {
		return ErrReadOnly
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	if off < 0 || n < 0 || off > d.size || n > d.size-off {
		return fmt.Errorf("%w: %d bytes at %d, size %d", ErrOutOfRange, n, off, d.size)
	}
	switch {
	case d.vhd != nil && d.vhd.header == nil:
		return copyRange(src, srcOff, d.vhd.f, off, n)
	case d.vhdx != nil && d.parent == nil:
		return d.vhdx.copyFrom(src, srcOff, off, n)
	}
	return bufferedCopy(d.b, src, srcOff, off, n)
}

// copyFrom copies into the blocks of a fixed or dynamic VHDX: a new block gets
// its data before its BAT entry.
func (x *vhdxFile) copyFrom(src *os.File, srcOff, off, n int64) error {
	if !x.started {
		if err := x.startSession(); err != nil {
			return err
		}
	}
	for n > 0 {
		k, in := off/x.bs, off%x.bs
		m := min(n, x.bs-in)
		idx := x.payloadEntry(k)
		e := x.bat[idx]
		if e&7 == VHDXBlockFullyPresent {
			if err := copyRange(src, srcOff, x.w, int64(e>>20)<<20+in, m); err != nil {
				return err
			}
		} else {
			blockOff, err := x.allocate(x.bs)
			if err != nil {
				return err
			}
			if err := copyRange(src, srcOff, x.w, blockOff+in, m); err != nil {
				return err
			}
			if err := x.setEntry(idx, uint64(blockOff)|VHDXBlockFullyPresent, true); err != nil {
				return err
			}
		}
		srcOff, off, n = srcOff+m, off+m, n-m
	}
	return nil
}

func bufferedFileCopy(src *os.File, srcOff int64, dst *os.File, dstOff, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		p := buf[:min(n, int64(len(buf)))]
		if _, err := src.ReadAt(p, srcOff); err != nil {
			return err
		}
		if _, err := dst.WriteAt(p, dstOff); err != nil {
			return err
		}
		srcOff, dstOff, n = srcOff+int64(len(p)), dstOff+int64(len(p)), n-int64(len(p))
	}
	return nil
}

// bufferedCopy writes src's bytes through the backend.
func bufferedCopy(b backend, src *os.File, srcOff, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		p := buf[:min(n, int64(len(buf)))]
		if _, err := src.ReadAt(p, srcOff); err != nil {
			return err
		}
		if err := b.write(p, off); err != nil {
			return err
		}
		srcOff, off, n = srcOff+int64(len(p)), off+int64(len(p)), n-int64(len(p))
	}
	return nil
}
