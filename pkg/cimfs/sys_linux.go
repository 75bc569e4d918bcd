package cimfs

import "golang.org/x/sys/unix"

// renameNoReplace renames from to to, failing with an error matching
// fs.ErrExist (EEXIST) when to exists: one atomic renameat2(RENAME_NOREPLACE).
func renameNoReplace(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
}
