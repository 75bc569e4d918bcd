//go:build !linux

package cimfs

import "os"

// renameNoReplace renames from to to, failing with an error matching
// fs.ErrExist when to exists. Without renameat2's RENAME_NOREPLACE it links
// the new name (which fails if it exists, atomically) and removes the old.
func renameNoReplace(from, to string) error {
	if err := os.Link(from, to); err != nil {
		return err
	}
	return os.Remove(from)
}
