//go:build unix

package vhd

import (
	"os"
	"syscall"
)

// allocatedBytes returns the bytes the host file system allocates to a file.
func allocatedBytes(fi os.FileInfo) (int64, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512, true
	}
	return 0, false
}
