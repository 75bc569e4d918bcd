package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

func (a *app) newCIMCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cim",
		Short: "Build, read, verify, export and mount CimFS layer images",
		Long: `CimFS images ("CIMs") are the read-only layer format of current Windows hosts:
a .cim file plus region and object ID files in one folder. hcs writes and reads
them in pure Go.

A CIM layer at LAYERDIR keeps its image in LAYERDIR/../cim-layers/<name>.cim,
beside the images of its parents, as hcsshim lays them out. Commands that read a
CIM take either such a LAYERDIR or the path of a .cim file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		a.newCIMCreateCommand(),
		a.newCIMLsCommand(),
		a.newCIMCatCommand(),
		a.newCIMStatCommand(),
		a.newCIMVerifyCommand(),
		a.newCIMExportCommand(),
		a.newCIMMountCommand(),
		a.newCIMUnmountCommand(),
	)
	return cmd
}

// cimPath resolves a CIM argument: a .cim file, or a CIM layer folder. Its
// errors name the argument as typed: a missing file, a folder that is not a
// CIM layer (and the image it lacks).
func cimPath(arg string) (string, error) {
	st, err := os.Stat(arg)
	switch {
	case err == nil && st.Mode().IsRegular():
		return arg, nil
	case err == nil && st.IsDir():
		p := wcim.GetCimPathFromLayer(arg)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return "", &notCIMError{arg: arg, cim: p}
		}
		return p, nil
	case err == nil:
		return "", fmt.Errorf("%s is neither a .cim file nor a CIM layer folder: %w", arg, fs.ErrInvalid)
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s: no such CIM file or CIM layer folder: %w", arg, fs.ErrNotExist)
	}
	return "", err
}

// notCIMError: a folder given as a CIM is not a CIM layer.
type notCIMError struct{ arg, cim string }

func (e *notCIMError) Error() string {
	return fmt.Sprintf("%s is not a CIM layer: it has no image %s", e.arg, e.cim)
}
func (e *notCIMError) Unwrap() []error { return []error{wcim.ErrNotCimLayer, fs.ErrNotExist} }

// openCIM opens the CIM named by arg; errors name arg.
func openCIM(arg string) (*cimfs.Image, error) {
	p, err := cimPath(arg)
	if err != nil {
		return nil, err
	}
	im, err := cimfs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("CIM %s: %w", arg, err)
	}
	return im, nil
}

type cimCreateResult struct {
	Layer      string `json:"layer"`
	CIM        string `json:"cim"`
	Bytes      int64  `json:"bytes"`
	ImageBytes int64  `json:"imageBytes"`
	Duration
	Source   string   `json:"source"`
	Warnings []string `json:"warnings,omitempty"`
}

func (a *app) newCIMCreateCommand() *cobra.Command {
	var (
		file    string
		folder  string
		parents []string
	)
	cmd := &cobra.Command{
		Use:   "create [flags] LAYERDIR",
		Short: "Build a CIM layer from an OCI Windows layer tar or a layer folder",
		Long: `Build the CIM layer LAYERDIR from an OCI Windows layer tar (plain, gzip or zstd;
-f FILE, standard input by default) or, with --from-folder, from a layer folder.
The tar is streamed straight into the image, with no intermediate folder.

A layer with parents names them with --parent, immediate parent first; the
immediate parent must be a CIM layer whose cim-layers folder is the same, and the
new image forks it (it references the parents' data rather than copying it).

Nothing is visible until the image is complete; a failure leaves no image. The
same input under the same LAYERDIR name gives byte-identical files.

A base layer whose image holds the registry hives gets Hives/*_BASE, the layout
file and the scratch template disks blank-base.vhdx and blank.vhdx (formatting
them needs root). A child layer with delta hives (Hives/*_DELTA), or a layer with
a utility VM image, is written with a warning on standard error: merging hives
and setting up a utility VM's boot need registry and BCD writers hcs does not
have (the layer's image is complete; its Hives/*_BASE are not made).

On success one line is printed: the data bytes, the layer, the image size (own
region and object ID files) and the time; -o json gives {"layer", "cim", "bytes",
"imageBytes", "seconds", "source", "warnings"}.`,
		Example: `  hcs cim create -f base.tar.gz /var/lib/hcs/snapshots/1
  hcs cim create -f app.tar --parent /var/lib/hcs/snapshots/1 /var/lib/hcs/snapshots/2
  hcs cim create --from-folder /var/lib/hcs/base /var/lib/hcs/snapshots/1`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if folder != "" && cmd.Flags().Changed("file") {
				return usageErrorf("give either -f FILE or --from-folder DIR")
			}
			return a.createCIM(cmd.Context(), file, folder, args[0], parents)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", stdio, "read the tar from `FILE`; - is standard input")
	f.StringVar(&folder, "from-folder", "", "build from the layer folder `DIR` instead of a tar")
	f.StringArrayVar(&parents, "parent", nil, "parent CIM layer `DIR`; repeat in order, immediate parent first")
	return cmd
}

func (a *app) createCIM(ctx context.Context, file, folder, layer string, parents []string) (retErr error) {
	// No soft heap limit by default: the writer's own state is bounded (spill
	// files behind a fixed page cache), but the layer validator's name table still
	// grows with the entries, and a limit near it made the collector run without
	// pause (4 GiB input: 33 s at 79 MiB with a 48 MiB limit, 19 s at 134 MiB
	// without). GOMEMLIMIT sets one for a caller that prefers memory to time.
	// The collector's growth target is lowered instead (see streamingGC).
	streamingGC()
	start := time.Now()
	if err := checkDestFolder(layer); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	var n int64
	var warnings []string
	source := folder
	if folder != "" {
		if err := checkLayerDir(folder); err != nil {
			return err
		}
		if err := wcim.ImportLayerFolder(ctx, folder, layer, parents); wcim.IsWrittenWithLimits(err) {
			warnings = a.warn(err)
		} else if err != nil {
			return fmt.Errorf("create %s from %s: %w", layer, folder, err)
		}
	} else {
		in, err := a.openInput(file)
		if err != nil {
			return err
		}
		defer in.close()
		source = in.name
		bar := a.progress("cim create", in.size)
		defer bar.Stop()
		rc, _, err := compress.NewReaderFormat(bar.Reader(in))
		if err != nil {
			return fmt.Errorf("create %s: %w", in.name, err)
		}
		defer rc.Close()
		if _, err := os.Lstat(layer); errors.Is(err, fs.ErrNotExist) {
			// The writer makes the folder; when a worker is killed before it
			// commits, main removes the folder (and what the writer put there).
			a.stagingIn("cimlayer", layer)
		}
		cimDir := wcim.GetCimDirFromLayer(absPath(layer))
		if _, err := os.Lstat(cimDir); errors.Is(err, fs.ErrNotExist) {
			a.stagingIn("emptydir", cimDir)
			defer func() {
				if retErr != nil {
					os.Remove(cimDir) // only if empty: nothing was committed
				}
			}()
		}
		a.stagingIn("cimfs", cimDir)
		cw, err := wcim.NewCimLayerWriter(ctx, layer, parents)
		if err != nil {
			return err
		}
		n, err = ociwclayer.DecodeTar(ctx, ctxReader{ctx, rc}, cw.EntryWriter())
		if err == nil {
			err = cw.Close(ctx)
		} else {
			cw.Abort()
		}
		bar.Stop()
		if wcim.IsWrittenWithLimits(err) {
			warnings = a.warn(err)
		} else if err != nil {
			return fmt.Errorf("create %s from %s: %w", layer, in.name, err)
		}
	}
	elapsed := time.Since(start)
	im, err := wcim.OpenLayer(layer)
	if err != nil {
		return err
	}
	usage, err := im.Usage()
	im.Close()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(layer)
	if err != nil {
		abs = layer
	}
	return a.result(
		fmt.Sprintf("created CIM layer %s (%s of data, image %s) in %s", abs, progress.Bytes(n), progress.Bytes(usage), seconds(elapsed)),
		cimCreateResult{Layer: abs, CIM: wcim.GetCimPathFromLayer(abs), Bytes: n, ImageBytes: usage, Duration: newDuration(elapsed), Source: absPath(source), Warnings: warnings})
}

// cimInnerPath turns a path given on the command line into an image path: '/' or '\'
// separated, leading separators optional.
func cimInnerPath(p string) string { return strings.TrimLeft(p, `/\`) }
