// Package atomicfile replaces files so that a crash leaves either the old
// content or the new one, never a mix: the new content goes to a temporary
// file in the same directory, which is synced, renamed over the name, and
// the directory synced so that the rename itself survives a power loss.
//
// Every writer of state and of staged output in the project goes through
// here, so the order of those four steps is written once.
package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces name with data, with permissions perm.
func WriteFile(name string, data []byte, perm fs.FileMode) error {
	return Write(name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write replaces name with what write writes, with permissions perm. The
// writer is buffered. If write fails, name is left as it was and the
// temporary file is removed.
func Write(name string, perm fs.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	return SyncDir(dir)
}

// Rename moves the finished file or directory from to its final name to:
// from is synced first (a directory's own entries; its files are the
// caller's to sync), then renamed, then the directory of to is synced.
func Rename(from, to string) error {
	if err := syncPath(from); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(to))
}

// SyncDir flushes the entries of dir, so that files created, renamed or
// removed in it stay so after a crash.
func SyncDir(dir string) error {
	return syncPath(dir)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// Some file systems (FUSE views, /proc) cannot sync a directory
	// (ENOTSUP, EINVAL): the rename is as durable there as it can be.
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, fs.ErrInvalid) {
		return nil
	}
	return err
}
