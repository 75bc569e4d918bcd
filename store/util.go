package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

func randomName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// diskUsage measures dir as du does: allocated blocks of every inode (each hard
// link once) and the number of inodes.
func diskUsage(ctx context.Context, dir string) (Usage, error) {
	var u Usage
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			u.Inodes++
			u.Size += fi.Size()
			return nil
		}
		k := ino{uint64(st.Dev), st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	return u, err
}

// removeAllUnder removes dir after unmounting whatever is mounted at or below it
// (lazily if busy: only leftovers of dead processes are removed this way).
func removeAllUnder(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := unmountUnder(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
