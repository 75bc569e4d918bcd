//go:build !unix

package vhd

import "os"

// allocatedBytes is unknown here: the file information has no block count.
func allocatedBytes(fi os.FileInfo) (int64, bool) { return 0, false }
