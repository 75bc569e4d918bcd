package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

type importResult struct {
	Layer string `json:"layer"`
	Bytes int64  `json:"bytes"`
	Duration
	ReadBytes   int64  `json:"readBytes"`
	Compression string `json:"compression"`
}

func (a *app) newLayerImportCommand() *cobra.Command {
	var (
		file    string
		parents []string
		noSync  bool
	)
	cmd := &cobra.Command{
		Use:   "import [flags] LAYERDIR",
		Short: "Write a layer folder from an OCI Windows layer tar",
		Long: `Read an OCI Windows layer tar (plain, gzip or zstd) and write it as a new layer
folder at LAYERDIR, which must not exist or be an empty directory.

Nothing appears at LAYERDIR until the whole tar has been read and checked; on any
failure, including an interruption, LAYERDIR is left as it was.

A layer that is not a base layer names its parents with --parent, repeated in
order: the immediate parent first, the base layer last.

On success one line is printed: the bytes of file data (alternate data streams
not counted), the layer folder and the time taken. With -o json it is
{"layer": ..., "bytes": ..., "seconds": ..., "readBytes": ..., "compression": ...},
readBytes being the size of the input as read (compressed).`,
		Example: `  hcs layer import -f base.tar.gz /var/lib/hcs/base
  curl -sL "$BLOB_URL" | hcs layer import --parent /var/lib/hcs/base /var/lib/hcs/app`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.importLayer(cmd.Context(), file, args[0], parents, noSync)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", stdio, "read the tar from `FILE`; - is standard input")
	f.StringVarP(&file, "input", "i", stdio, "read the tar from `FILE` (same as --file)")
	f.StringArrayVar(&parents, "parent", nil, "parent layer `DIR`; repeat in order, immediate parent first, base layer last")
	f.BoolVar(&noSync, "no-sync", false, "do not flush the layer to stable storage before making it visible (faster; a machine crash soon after may lose data)")
	cmd.MarkFlagsMutuallyExclusive("file", "input")
	return cmd
}

func (a *app) importLayer(ctx context.Context, file, layer string, parents []string, noSync bool) error {
	start := time.Now()
	if err := checkDestFolder(layer); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	in, err := a.openInput(file)
	if err != nil {
		return err
	}
	defer in.close()

	bar := a.progress("import", in.size)
	defer bar.Stop()
	rc, format, err := compress.NewReaderFormat(bar.Reader(in))
	if err != nil {
		return fmt.Errorf("import %s: %w", in.name, err)
	}
	defer rc.Close()
	a.log.Debug("import", logKeyFile, in.name, logKeyLayer, layer, logKeyCompression, format, logKeyBytes, in.size, logKeyParents, parents)

	a.stagingIn("winlayer", filepath.Dir(absPath(layer)))
	n, err := ociwclayer.ImportLayerFromTar(ctx, ctxReader{ctx, rc}, layer, parents, winlayer.WithSync(!noSync))
	bar.Stop()
	if err != nil {
		return fmt.Errorf("import %s: %w", in.name, err)
	}
	elapsed := time.Since(start)
	abs, err := filepath.Abs(layer)
	if err != nil {
		abs = layer
	}
	a.log.Debug("imported", logKeyLayer, abs, logKeyBytes, n, logKeyElapsed, elapsed)
	return a.result(
		fmt.Sprintf("imported %s into %s in %s", progress.Bytes(n), abs, seconds(elapsed)),
		importResult{Layer: abs, Bytes: n, Duration: newDuration(elapsed), ReadBytes: bar.N(), Compression: format.String()})
}

// checkDestFolder refuses a destination that exists and is not a folder,
// naming it as typed (an error matching fs.ErrExist).
func checkDestFolder(path string) error {
	st, err := os.Lstat(path)
	if err == nil && !st.IsDir() {
		return fmt.Errorf("%s exists and is not a folder: %w", path, fs.ErrExist)
	}
	return nil
}
