package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	cimtar "github.com/hostcompute/hostcompute/pkg/ociwclayer/cim"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

func (a *app) newCIMExportCommand() *cobra.Command {
	var (
		out           tarOutput
		folder        string
		parentFolders []string
	)
	cmd := &cobra.Command{
		Use:   "export [flags] LAYERDIR",
		Short: "Write a CIM layer as an OCI Windows layer tar or a layer folder",
		Long: `Write the CIM layer LAYERDIR as an OCI Windows layer tar (to standard output or
-f FILE, --gzip or --zstd to compress): the layer's own entries and the names it
removes from its parents, not what it inherits. The tar is byte-identical to what
"hcs layer export" writes for the same layer in folder form, so a tar imported
with "hcs cim create" exports unchanged.

With --to-folder DIR the layer is written as a layer folder instead, whose parents
are the folder layers given with --parent-folder (immediate parent first).`,
		Example: `  hcs cim export -f app.tar.gz --gzip /var/lib/hcs/snapshots/2
  hcs cim export --to-folder /var/lib/hcs/base /var/lib/hcs/snapshots/1`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx, layer := cmd.Context(), args[0]
			if !wcim.IsCimLayer(layer) {
				return fmt.Errorf("export %s: %w", layer, wcim.ErrNotCimLayer)
			}
			if folder != "" {
				start := time.Now()
				a.stagingIn("winlayer", filepath.Dir(absPath(folder)))
				if err := wcim.ExportLayerFolder(ctx, layer, folder, parentFolders); err != nil {
					return err
				}
				return a.result(fmt.Sprintf("exported %s to the layer folder %s in %s", layer, folder, seconds(time.Since(start))),
					cimExportFolderResult{Layer: absPath(layer), Folder: absPath(folder), Duration: newDuration(time.Since(start))})
			}
			format := out.format()
			if out.file == stdio {
				return a.writeStdout(func(w io.Writer) (int64, error) { return a.exportCIM(ctx, w, layer, format) })
			}
			start := time.Now()
			n, err := a.writeFileAtomically(out.file, "export", func(w io.Writer) (int64, error) {
				return a.exportCIM(ctx, w, layer, format)
			})
			if err != nil {
				return err
			}
			abs, aerr := filepath.Abs(layer)
			if aerr != nil {
				abs = layer
			}
			elapsed := time.Since(start)
			return a.result(
				fmt.Sprintf("exported %s to %s (%s) in %s", abs, out.file, progress.Bytes(n), seconds(elapsed)),
				exportResult{Layer: abs, File: absPath(out.file), Bytes: n, Duration: newDuration(elapsed), Compression: format.String()})
		}),
	}
	out.register(cmd)
	cmd.Flags().StringVar(&folder, "to-folder", "", "write a layer folder at `DIR` instead of a tar")
	cmd.Flags().StringArrayVar(&parentFolders, "parent-folder", nil, "parent layer folder `DIR` of --to-folder; repeat, immediate parent first")
	return cmd
}

func (a *app) exportCIM(ctx context.Context, w io.Writer, layer string, format compress.Format) (int64, error) {
	bar := a.progress("cim export", 0)
	defer bar.Stop()
	cw, err := compress.NewWriter(bar.Writer(w), format)
	if err != nil {
		return 0, err
	}
	if err := cimtar.ExportCimLayerToTar(ctx, ctxWriter{ctx, cw}, layer, nil); err != nil {
		return 0, err
	}
	if err := cw.Close(); err != nil {
		return 0, err
	}
	return bar.N(), nil
}

// cimExportFolderResult is the -o json document of cim export --to-folder.
type cimExportFolderResult struct {
	Layer  string `json:"layer"`
	Folder string `json:"folder"`
	Duration
}
