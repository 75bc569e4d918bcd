package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

type ociDiffResult struct {
	Upper string `json:"upper"`
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	Duration
	Compression string `json:"compression"`
}

func (a *app) newOCILayerDiffCommand() *cobra.Command {
	var out tarOutput
	cmd := &cobra.Command{
		Use:   "diff [flags] UPPERDIR",
		Short: "Write an overlayfs upper directory as an OCI Linux layer tar",
		Long: `Write the overlayfs upper directory UPPERDIR as an OCI Linux layer tar, to
standard output or to the file given with -f. The tar is deterministic. Overlay
whiteouts (0/0 character devices) become ".wh.NAME" entries and opaque
directories get a ".wh..wh..opq" entry. --gzip or --zstd compress it.

Upper directories using metacopy or redirect_dir cannot be translated without
the lower layers and fail with exit code 3.

A file is written under a temporary name in the same directory, flushed to stable
storage and renamed over FILE at the end, so a failed diff leaves no partial file
(only a killed process leaves its .FILE.hcs-diff-* behind); an existing FILE is
replaced. The new file's mode is 0666 less the umask.

When writing to a file, one line is printed: the bytes written, the file and the
time taken; with -o json it is {"upper": ..., "file": ..., "bytes": ...,
"seconds": ..., "compression": ...}. When the tar goes to standard output nothing
else is printed there.`,
		Example: `  hcs ocilayer diff -f layer.tar.gz --gzip /var/lib/overlay/upper
  hcs ocilayer diff /var/lib/overlay/upper | sha256sum`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx, format := cmd.Context(), out.format()
			if out.file == stdio {
				return a.writeStdout(func(w io.Writer) (int64, error) { return a.diff(ctx, w, args[0], format) })
			}
			return a.diffToFile(ctx, args[0], out.file, format)
		}),
	}
	out.register(cmd)
	return cmd
}

func (a *app) diffToFile(ctx context.Context, upper, file string, format compress.Format) error {
	start := time.Now()
	// Check the upper directory before creating anything.
	if st, err := os.Stat(upper); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("diff: %s is not a directory", upper)
	}
	n, err := a.writeFileAtomically(file, "diff", func(w io.Writer) (int64, error) {
		return a.diff(ctx, w, upper, format)
	})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	abs, aerr := filepath.Abs(upper)
	if aerr != nil {
		abs = upper
	}
	a.log.Debug("diffed", logKeyRoot, abs, logKeyFile, file, logKeyBytes, n, logKeyElapsed, elapsed)
	return a.result(
		fmt.Sprintf("wrote %s to %s (%s) in %s", abs, file, progress.Bytes(n), seconds(elapsed)),
		ociDiffResult{Upper: abs, File: absPath(file), Bytes: n, Duration: newDuration(elapsed), Compression: format.String()})
}

// diff writes upper to w as a layer tar compressed in format and returns the
// bytes written to w.
func (a *app) diff(ctx context.Context, w io.Writer, upper string, format compress.Format) (int64, error) {
	bar := a.progress("diff", 0)
	defer bar.Stop()
	cw, err := compress.NewWriter(bar.Writer(w), format)
	if err != nil {
		return 0, err
	}
	if err := ocilayer.Diff(ctx, ctxWriter{ctx, cw}, upper); err != nil {
		return 0, fmt.Errorf("diff %s: %w", upper, classifyEntryError(err))
	}
	if err := cw.Close(); err != nil {
		return 0, err
	}
	return bar.N(), nil
}
