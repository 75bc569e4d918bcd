package cimfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a range of f back now,
// without waiting, so that the fsync at commit finds little left to do.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// renameNoReplace renames from to to, failing with an error matching
// fs.ErrExist (EEXIST) when to exists: one atomic renameat2(RENAME_NOREPLACE).
func renameNoReplace(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
}
