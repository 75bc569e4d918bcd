//go:build !linux

package vhd

import "os"

// copyRange copies n bytes from src at srcOff to dst at dstOff through a
// buffer: copy_file_range is Linux's.
func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff, n int64) error {
	return bufferedFileCopy(src, srcOff, dst, dstOff, n)
}

// allocate leaves the range as it is: without fallocate the blocks of a fixed
// disk stay holes until written, as on a file system that cannot allocate.
func allocate(f *os.File, off, n int64) error { return nil }
