package vhd

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyRange copies n bytes from src at srcOff to dst at dstOff with
// copy_file_range, or through a buffer where the kernel cannot.
func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff, n int64) error {
	for n > 0 {
		so, do := srcOff, dstOff
		c, err := unix.CopyFileRange(int(src.Fd()), &so, int(dst.Fd()), &do, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return bufferedFileCopy(src, srcOff, dst, dstOff, n)
			}
			return fmt.Errorf("vhd: copy_file_range: %w", err)
		}
		if c == 0 {
			return fmt.Errorf("vhd: copying from %s at %d: %w", src.Name(), srcOff, io.ErrUnexpectedEOF)
		}
		srcOff, dstOff, n = srcOff+int64(c), dstOff+int64(c), n-int64(c)
	}
	return nil
}

// allocate reserves the blocks of f's range [off, off+n) on the host file
// system (fallocate); where the file system cannot, they stay holes.
func allocate(f *os.File, off, n int64) error {
	if err := unix.Fallocate(int(f.Fd()), 0, off, n); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	return nil
}
