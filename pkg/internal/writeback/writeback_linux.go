package writeback

import "golang.org/x/sys/unix"

// Start starts the writeback of n bytes of the file fd from off (n == 0: to
// its end) and returns at once. It may wait while the device's queue is full,
// so writers that must not wait call it from a goroutine of their own.
func Start(fd int, off, n int64) {
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}
