package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/internal/staging"
)

// writeFileAtomically writes file through a temporary sibling that is flushed, synced
// and renamed into place only when write succeeds, so a failed or interrupted command
// leaves neither a partial file nor a temporary one (the temporary file is named
// after this process, see package staging). kind prefixes errors. It returns what write returns.
func (a *app) writeFileAtomically(file, kind string, write func(w io.Writer) (int64, error)) (n int64, err error) {
	if st, err := os.Stat(file); err == nil && st.IsDir() {
		return 0, fmt.Errorf("%s: %s is a directory", kind, file)
	}
	dir := filepath.Dir(file)
	a.stagingIn("staging", dir)
	tmp := staging.Name(file)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				a.log.Warn("removing temporary file", logKeyFile, tmp, logKeyError, rerr)
			}
		}
	}()
	bw := &bufferedFile{bufio.NewWriterSize(f, 256<<10), f}
	stopWriteback := writebackWhileGrowing(f)
	defer stopWriteback()
	if n, err = write(bw); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	stopWriteback()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, file); err != nil {
		return 0, err
	}
	syncDir(dir)
	return n, nil
}

// writebackStep is how much a file being written grows between two starts of
// its writeback.
const writebackStep = 8 << 20

// writebackWhileGrowing starts the kernel's writeback of what has been written
// to f, each time it has grown by writebackStep, from a goroutine of its own,
// until stop is called (stop may be called more than once). It watches the
// file's size because the writer (a tar stream writing at offsets, or the
// kernel copying file data into it) is not this code's; vhd convert, which
// writes a sparse file of its own, counts its bytes instead (writeback). The file is synced at the
// end: written back meanwhile, the disk works while the data is produced, and
// the sync finds little left. sync_file_range only starts the writes; it may
// wait for the device's queue, which is why it is not on the writer's path.
func writebackWhileGrowing(f *os.File) (stop func()) {
	fd := int(f.Fd())
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var from int64
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			var st unix.Stat_t
			if unix.Fstat(fd, &st) != nil {
				return
			}
			if st.Size-from >= writebackStep {
				if unix.SyncFileRange(fd, from, st.Size-from, unix.SYNC_FILE_RANGE_WRITE) != nil {
					return
				}
				from = st.Size
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-finished }) }
}

// tarOutput holds the flags of a command that writes a tar: -f FILE (or - for
// standard output) and --gzip/--zstd.
type tarOutput struct {
	file      string
	gzip, zst bool
}

func (o *tarOutput) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", stdio, "write the tar to `FILE`; - is standard output")
	f.BoolVar(&o.gzip, "gzip", false, "compress with gzip")
	f.BoolVar(&o.zst, "zstd", false, "compress with zstd")
	cmd.MarkFlagsMutuallyExclusive("gzip", "zstd")
}

func (o *tarOutput) format() compress.Format {
	switch {
	case o.gzip:
		return compress.Gzip
	case o.zst:
		return compress.Zstd
	}
	return compress.None
}

// writeStdout writes a tar to standard output, refusing a terminal.
func (a *app) writeStdout(write func(w io.Writer) (int64, error)) error {
	if progress.IsTerminal(a.stdout) {
		return usageErrorf("refusing to write a tar to a terminal: give -f FILE or redirect standard output")
	}
	var bw interface {
		io.Writer
		Flush() error
	} = bufio.NewWriterSize(a.stdout, 256<<10)
	if f, ok := a.stdout.(*os.File); ok {
		bw = &bufferedFile{bufio.NewWriterSize(f, 256<<10), f}
	}
	if _, err := write(bw); err != nil {
		return err
	}
	return bw.Flush()
}

// bufferedFile is the buffered output of a command that writes to a file or to
// standard output. A writer that can put data into the file by the kernel
// (copy_file_range, sendfile) asks for the file itself with direct.
type bufferedFile struct {
	*bufio.Writer
	f *os.File
}

// direct flushes the buffer and returns the file and its offset (-1 for a pipe),
// so that the caller writes to it without the buffer from now on.
func (b *bufferedFile) direct() (*os.File, int64, error) {
	if err := b.Flush(); err != nil {
		return nil, 0, err
	}
	off, err := b.f.Seek(0, io.SeekCurrent)
	if err != nil {
		off = -1
	}
	return b.f, off, nil
}
