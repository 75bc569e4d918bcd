package main

import (
	"context"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
	"github.com/hostcompute/hostcompute/wclayer"
)

// layerStateResult is what the scratch, activate, prepare, unprepare,
// deactivate and path commands print with -o json.
type layerStateResult struct {
	Layer       string `json:"layer"`
	Path        string `json:"mountPath"` // wclayer.GetLayerMountPath after the command
	Activations int    `json:"activations"`
	Prepares    int    `json:"prepares"`
}

// layerState reports the layer's mount path and counts after a command.
func (a *app) layerState(ctx context.Context, layer string) error {
	p, err := wclayer.GetLayerMountPath(ctx, layer)
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(layer)
	res := layerStateResult{Layer: abs, Path: p}
	if p != abs {
		if res.Activations, res.Prepares, err = host.LayerState(ctx, layer); err != nil {
			return err
		}
	}
	return a.result(p, res)
}

const layerActivateHelp = `A read-write (scratch) layer is a layer folder with sandbox.vhdx, a sparse
disk formatted ext4. activate attaches that disk and mounts it at
/run/hostcompute/layers/<GUID>/volume; prepare mounts an
overlayfs union of the parent layers (their Files/, each layer's deletions
hiding its parents' files) over it at .../<GUID>/union. GUID is the name
GUID (wclayer.NameToGuid) of the layer folder's absolute path;
$HOSTCOMPUTE_STATE_DIR moves /run/hostcompute (the host engine's
state root). Both are counted, also across processes:
two activates need two deactivates, and the last deactivate of a prepared layer
is refused until it is unprepared. The mounts outlive the command.

Each command prints the layer's mount path afterwards (the union when prepared,
the volume when active, else the folder); -o json gives {"layer", "mountPath",
"activations", "prepares"}.`

func (a *app) newLayerScratchCommand() *cobra.Command {
	var (
		parents []string
		size    string
		ntfs    bool
	)
	cmd := &cobra.Command{
		Use:   "scratch [flags] LAYERDIR",
		Short: "Create a read-write (scratch) layer with its sandbox.vhdx",
		Long: `Create the scratch layer LAYERDIR (wclayer.CreateScratchLayer): a layer folder
whose layerchain.json names the --parent layers (immediate parent first, down
to the base) and whose sandbox.vhdx is a dynamic VHDX, sparse, of --size bytes
(20GiB by default), formatted ext4 (NTFS with --ntfs). LAYERDIR must not exist
(exit code 4).

` + layerActivateHelp,
		Example: `  hcs layer scratch --parent layers/app --parent layers/base layers/ctr1
  hcs layer activate layers/ctr1 && hcs layer prepare layers/ctr1`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			var opts []wclayer.ScratchOption
			if size != "" {
				n, err := parseSize(size)
				if err != nil || n <= 0 {
					return usageErrorf("invalid --size %q", size)
				}
				opts = append(opts, wclayer.WithScratchSize(n))
			}
			if ntfs {
				opts = append(opts, wclayer.WithNTFS())
			}
			if err := wclayer.CreateScratchLayerWithOptions(cmd.Context(), args[0], parents, opts...); err != nil {
				return err
			}
			return a.layerState(cmd.Context(), args[0])
		}),
	}
	cmd.Flags().StringArrayVar(&parents, "parent", nil, "parent layer `DIR`, immediate parent first (repeat)")
	cmd.Flags().StringVar(&size, "size", "", "virtual size of sandbox.vhdx, such as 20GiB (default 20GiB)")
	cmd.Flags().BoolVar(&ntfs, "ntfs", false, "format sandbox.vhdx with NTFS instead of ext4")
	return cmd
}

// newLayerCountedCommand makes activate, deactivate, unprepare and path,
// which take one layer folder and nothing else.
func (a *app) newLayerCountedCommand(use, short string, fn func(context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " LAYERDIR",
		Short: short,
		Long:  short + ".\n\n" + layerActivateHelp,
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if fn != nil {
				if err := fn(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return a.layerState(cmd.Context(), args[0])
		}),
	}
}

func (a *app) newLayerPrepareCommand() *cobra.Command {
	var parents []string
	cmd := &cobra.Command{
		Use:   "prepare [flags] LAYERDIR",
		Short: "Mount the union of the parents over an activated scratch layer",
		Long: `Mount the union of the parent layers over the activated scratch layer LAYERDIR
(wclayer.PrepareLayer). The parents are the --parent layers, immediate parent
first, or, without --parent, the ones its layerchain.json names.

` + layerActivateHelp,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if len(parents) == 0 {
				chain, err := winlayer.Parents(args[0])
				if err != nil {
					return err
				}
				parents = chain
			}
			if err := wclayer.PrepareLayer(cmd.Context(), args[0], parents); err != nil {
				return err
			}
			return a.layerState(cmd.Context(), args[0])
		}),
	}
	cmd.Flags().StringArrayVar(&parents, "parent", nil, "parent layer `DIR`, immediate parent first (repeat); default: layerchain.json")
	return cmd
}

// layerActivateCommands are the scratch layer commands of hcs layer.
func (a *app) layerActivateCommands() []*cobra.Command {
	return []*cobra.Command{
		a.newLayerScratchCommand(),
		a.newLayerCountedCommand("activate", "Attach and mount a scratch layer's disk (read-only layers: nothing to do)", wclayer.ActivateLayer),
		a.newLayerPrepareCommand(),
		a.newLayerCountedCommand("unprepare", "Undo one prepare of a scratch layer", wclayer.UnprepareLayer),
		a.newLayerCountedCommand("deactivate", "Undo one activate of a scratch layer", wclayer.DeactivateLayer),
		a.newLayerCountedCommand("path", "Print where a layer can be used: its union, its volume or its folder", nil),
	}
}
