package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/wclayer"
)

type exportResult struct {
	Layer string `json:"layer"`
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	Duration
	Compression string `json:"compression"`
}

func (a *app) newLayerExportCommand() *cobra.Command {
	var out tarOutput
	cmd := &cobra.Command{
		Use:   "export [flags] LAYERDIR",
		Short: "Write a layer folder as an OCI Windows layer tar",
		Long: `Write the layer folder LAYERDIR as an OCI Windows layer tar, to standard output
or to the file given with -f. The tar is deterministic: the same layer always gives
the same bytes, hence the same digest. --gzip or --zstd compress it.

A scratch layer (hcs layer scratch) exports its changes to its parents: what was
written through its union, as a layer tar whose deletions are whiteouts, whose
files copied up from a parent keep the parent's Windows metadata and whose new
files get what Windows gives files a container creates. Importing that tar over
the parents gives the union's content. A scratch layer that is not active is
activated for the time of the export.

A file is written under a temporary name in the same directory, flushed to stable
storage and renamed over FILE at the end, so a failed export leaves no partial
file (only a killed process leaves its .FILE.hcs-export-* behind); an existing
FILE is replaced. The new file's mode is 0666 less the umask.

When writing to a file, one line is printed: the bytes written, the file and the
time taken; with -o json it is {"layer": ..., "file": ..., "bytes": ...,
"seconds": ..., "compression": ...}. When the tar goes to standard output nothing
else is printed there.`,
		Example: `  hcs layer export -f app.tar.gz --gzip /var/lib/hcs/app
  hcs layer export /var/lib/hcs/app | sha256sum`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx, format := cmd.Context(), out.format()
			if out.file == stdio {
				return a.writeStdout(func(w io.Writer) (int64, error) { return a.export(ctx, w, args[0], format) })
			}
			return a.exportToFile(ctx, args[0], out.file, format)
		}),
	}
	out.register(cmd)
	return cmd
}

func (a *app) exportToFile(ctx context.Context, layer, file string, format compress.Format) error {
	start := time.Now()
	n, err := a.writeFileAtomically(file, "export", func(w io.Writer) (int64, error) {
		return a.export(ctx, w, layer, format)
	})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	abs, aerr := filepath.Abs(layer)
	if aerr != nil {
		abs = layer
	}
	a.log.Debug("exported", logKeyLayer, abs, logKeyFile, file, logKeyBytes, n, logKeyElapsed, elapsed)
	return a.result(
		fmt.Sprintf("exported %s to %s (%s) in %s", abs, file, progress.Bytes(n), seconds(elapsed)),
		exportResult{Layer: abs, File: absPath(file), Bytes: n, Duration: newDuration(elapsed), Compression: format.String()})
}

// export writes layer to w as a tar compressed in format and returns the bytes
// written to w.
func (a *app) export(ctx context.Context, w io.Writer, layer string, format compress.Format) (int64, error) {
	if err := checkLayerDir(layer); err != nil {
		return 0, err
	}
	bar := a.progress("export", 0)
	defer bar.Stop()
	// An uncompressed tar without a progress bar goes straight into the output
	// file, so that file data is copied by the kernel (see tarstream.Writer).
	if bf, ok := w.(*bufferedFile); ok && format == compress.None && !bar.Enabled() {
		f, start, err := bf.direct()
		if err != nil {
			return 0, err
		}
		if err := wclayer.ExportLayerToTar(ctx, f, layer, nil); err != nil {
			return 0, err
		}
		if start < 0 {
			return 0, nil // a pipe: the count is not reported
		}
		end, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, err
		}
		return end - start, nil
	}
	cw, err := compress.NewWriter(bar.Writer(w), format)
	if err != nil {
		return 0, err
	}
	// A layer folder holds its whole content, so no parent is needed to export it;
	// a scratch layer exports its changes to the parents its layerchain.json names.
	if err := wclayer.ExportLayerToTar(ctx, ctxWriter{ctx, cw}, layer, nil); err != nil {
		return 0, err
	}
	if err := cw.Close(); err != nil {
		return 0, err
	}
	return bar.N(), nil
}

// syncDir flushes a directory so that a rename in it survives a crash. Failures are
// ignored: the file itself is already on stable storage.
func syncDir(dir string) { _ = atomicfile.SyncDir(dir) }
