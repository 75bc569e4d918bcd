package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

type ociApplyResult struct {
	Root  string `json:"root"`
	Bytes int64  `json:"bytes"`
	Duration
	ReadBytes   int64  `json:"readBytes"`
	Compression string `json:"compression"`
}

func (a *app) newOCILayerApplyCommand() *cobra.Command {
	var (
		file        string
		skipDevices bool
		noOwnership bool
	)
	cmd := &cobra.Command{
		Use:   "apply [flags] ROOTDIR",
		Short: "Apply an OCI Linux layer tar onto a directory",
		Long: `Read an OCI Linux layer tar (plain, gzip or zstd) and apply it onto ROOTDIR.
Whiteouts remove files of the layers applied before; later entries replace
earlier ones.

Every path is resolved inside ROOTDIR: symlinks already there, absolute ones
included, resolve as if ROOTDIR were "/". An entry, hard-link target or whiteout
whose name leaves ROOTDIR (such as "../x") fails the command with exit code 3.
When ROOTDIR does not exist or is an empty directory the apply is all or
nothing: the tree is built in a hidden directory beside ROOTDIR and renamed into
place only when every entry applied, so a failure, an interrupt or a killed
process leaves ROOTDIR as it was (a staging directory left by a killed process is
removed by the next apply in the same directory). Hard links must then name
earlier entries of the layer.

Onto an existing non-empty ROOTDIR (the layers applied before) the layer is
applied entry by entry in place: on failure the entries before the failing one
stay applied, with their whiteouts and replacements done, and nothing from the
failing entry on is; nothing outside ROOTDIR is touched. Apply onto a copy when
that matters.

Either way the error names the failing entry and the offset of its header in the
uncompressed tar. Entries follow the rules of an OCI Linux layer shared by every
path into one (tar2ext4, apply, diff): no names leaving ROOTDIR, no writes below a
symlink or file of the same layer, no overlayfs attributes (trusted.overlay.*,
user.overlay.*), no malformed whiteouts (".wh..", ".wh..."). Sparse files (GNU
and PAX 0.x/1.0) keep their holes; files over 128 GiB are refused.

Devices need privileges: --skip-devices skips those that may not be created.
Without root, --no-ownership leaves files owned by the calling user.

On success one line is printed: the bytes of file data written, ROOTDIR and the
time taken. With -o json it is {"root": ..., "bytes": ..., "seconds": ...,
"readBytes": ..., "compression": ...}, readBytes being the size of the input as
read (compressed).`,
		Example: `  hcs ocilayer apply -f base.tar.gz /var/lib/rootfs
  curl -sL "$BLOB_URL" | hcs ocilayer apply /var/lib/rootfs`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			var opts []ocilayer.ApplyOption
			if skipDevices {
				opts = append(opts, ocilayer.WithSkipDevices())
			}
			if noOwnership {
				opts = append(opts, ocilayer.WithoutOwnership())
			}
			return a.applyOCILayer(cmd.Context(), file, args[0], opts)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", stdio, "read the tar from `FILE`; - is standard input")
	f.BoolVar(&skipDevices, "skip-devices", false, "skip character and block devices that may not be created here instead of failing")
	f.BoolVar(&noOwnership, "no-ownership", false, "leave files owned by the calling user instead of applying the uid and gid of each entry")
	return cmd
}

func (a *app) applyOCILayer(ctx context.Context, file, root string, opts []ocilayer.ApplyOption) error {
	start := time.Now()
	in, err := a.openInput(file)
	if err != nil {
		return err
	}
	defer in.close()
	apply := ocilayer.Apply
	if ents, err := os.ReadDir(root); errors.Is(err, os.ErrNotExist) || err == nil && len(ents) == 0 {
		apply = ocilayer.ApplyNew // all or nothing
		if err := os.MkdirAll(filepath.Dir(filepath.Clean(root)), 0o755); err != nil {
			return err
		}
		a.stagingIn("ocilayer", filepath.Dir(absPath(root)))
	}

	bar := a.progress("apply", in.size)
	defer bar.Stop()
	rc, format, err := compress.NewReaderFormat(bar.Reader(in))
	if err != nil {
		return fmt.Errorf("apply %s: %w", in.name, err)
	}
	defer rc.Close()
	a.log.Debug("apply", logKeyFile, in.name, logKeyRoot, root, logKeyCompression, format, logKeyBytes, in.size)

	n, err := apply(ctx, root, ctxReader{ctx, rc}, opts...)
	bar.Stop()
	if err != nil {
		return fmt.Errorf("apply %s: %w", in.name, classifyEntryError(err))
	}
	elapsed := time.Since(start)
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	a.log.Debug("applied", logKeyRoot, abs, logKeyBytes, n, logKeyElapsed, elapsed)
	return a.result(
		fmt.Sprintf("applied %s to %s in %s", progress.Bytes(n), abs, seconds(elapsed)),
		ociApplyResult{Root: abs, Bytes: n, Duration: newDuration(elapsed), ReadBytes: bar.N(), Compression: format.String()})
}

// logKeyRoot is the log key of an OCI layer root or upper directory.
const logKeyRoot = "root"

// classifyEntryError marks a failure tied to a layer entry as invalid input
// unless the system failed while handling it (disk full, permission denied,
// a device or xattr this host cannot create, ...), as exitCode does for
// ociwclayer. It covers what the sentinels in invalidInput do not: a tar the
// reader cannot parse, entry types ocilayer does not handle (sparse files,
// sockets) and upper directories using metacopy or redirect_dir.
func classifyEntryError(err error) error {
	if !errors.As(err, new(*ocilayer.EntryError)) {
		return err
	}
	if errors.As(err, new(syscall.Errno)) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return invalidTarError{err}
}

// invalidTarError is bad input; it matches ocilayer.ErrInvalidEntry besides
// its cause, and reads as its cause.
type invalidTarError struct{ err error }

func (e invalidTarError) Error() string   { return e.err.Error() }
func (e invalidTarError) Unwrap() []error { return []error{e.err, ocilayer.ErrInvalidEntry} }
