package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"

	"github.com/hostcompute/hostcompute/hns"
	"github.com/hostcompute/hostcompute/image"
	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/ext4"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/vhd"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
	"github.com/hostcompute/hostcompute/store"
)

// Exit codes. Scripts rely on them: change none, and list new ones in exitCodesHelp.
const (
	exitOK           = 0   // success
	exitFailure      = 1   // any failure not listed below (I/O, permissions, ...)
	exitUsage        = 2   // bad command line
	exitInvalidInput = 3   // malformed or unsafe tar, corrupt layer or compressed data
	exitExists       = 4   // the destination exists (fs.ErrExist)
	exitNotFound     = 5   // a file or layer is missing (fs.ErrNotExist)
	exitInterrupted  = 130 // SIGINT or SIGTERM
)

const exitCodesHelp = `Exit codes:
  0    success
  1    other failure (I/O, permissions, ...)
  2    usage error: unknown command or flag, wrong number of arguments
  3    invalid input: a malformed or unsafe tar, a corrupt layer or disk, a
       file that is not the format it must be, an input over a limit
  4    the destination already exists, or another command is writing it
  5    not found: a missing file or layer, or a folder that is not a layer
  130  interrupted by SIGINT or SIGTERM`

// invalidInput lists the error classes that mean the tar or layer read is bad.
var invalidInput = []error{
	winlayer.ErrInvalidName,
	winlayer.ErrInsecurePath,
	winlayer.ErrOutsideLayer,
	winlayer.ErrCaseCollision,
	winlayer.ErrParentNotDirectory,
	winlayer.ErrSizeMismatch,
	winlayer.ErrTooLarge,
	winlayer.ErrNotSupported,
	winlayer.ErrLinkTarget,
	winlayer.ErrBaseLayerWhiteout,
	winlayer.ErrCorrupt,
	ociwclayer.ErrBadPAX,
	ociwclayer.ErrOrphanStream,
	ociwclayer.ErrUnsupportedEntry,
	ociwclayer.ErrTruncated,
	winfile.ErrInvalidFormat,
	compress.ErrCorrupt,
	compress.ErrUnsupported,
	ocilayer.ErrInsecurePath,
	ocilayer.ErrInvalidEntry,
	vhd.ErrInvalidFormat,
	vhd.ErrChecksum,
	vhd.ErrTruncated,
	vhd.ErrLogReplayNeeded,
	io.ErrUnexpectedEOF,
	cimfs.ErrInvalidFormat,
	cimfs.ErrInvalidName,
	ext4.ErrInvalidTar,
	ext4.ErrInsecurePath,
	ext4.ErrNotDir,
	ext4.ErrLinkTarget,
	ext4.ErrConflict,
	ext4.ErrXattr,
	ext4.ErrUnsupported,
	ext4.ErrTooLarge, // a tar whose files or tree exceed the image's limits (a tar bomb)
	ocilayer.ErrTooLarge,
	hns.ErrInvalid,
	errStoreDamaged,
	store.ErrCorrupt,
	image.ErrDigestMismatch,
	image.ErrInvalid,
}

// usageError marks a bad command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// reportedError is a failure whose messages were already written to standard error;
// it only carries the exit code.
type reportedError struct{ err error }

func (e reportedError) Error() string { return e.err.Error() }
func (e reportedError) Unwrap() error { return e.err }

// exitCode maps the error of a command to the exit status. ctx is the signal context:
// once a signal has arrived every failure counts as an interruption, since the
// cancellation may surface as any error.
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	for _, class := range invalidInput {
		if errors.Is(err, class) {
			return exitInvalidInput
		}
	}
	// Anything else tied to a tar entry is bad input too, unless the system failed
	// while handling it (disk full, permission denied, ...).
	if errors.As(err, new(*ociwclayer.TarError)) {
		if errors.As(err, new(syscall.Errno)) {
			return exitFailure
		}
		return exitInvalidInput
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		return exitExists
	case errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	}
	return exitFailure
}
