package main

import (
	"github.com/spf13/cobra"
)

func (a *app) newLayerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "layer",
		Short: "Import, export, inspect, check and remove Windows container layers; mount Linux layer stacks",
		Long: `Windows container layers come in two forms: the OCI Windows layer tar that
registries serve, and the layer folder that containers run from. A layer folder
holds Files/, Hives/ and UtilityVM/ as real files, with all Windows metadata
(security descriptors, attributes, times, extended attributes, alternate data
streams, reparse points) kept beside them.

Tar paths are given with -f/--file, "-" meaning standard input or output. Input
may be plain, gzip or zstd; the compression is recognised from its first bytes.

mount and unmount stack Linux layer disks (ext4 images) under a scratch disk as a
container root file system.

scratch creates a read-write layer (a sandbox.vhdx beside layerchain.json);
activate, prepare, unprepare, deactivate and path mount it and the union of its
parents as hcsshim's ActivateLayer, PrepareLayer and their inverses do.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		a.newLayerImportCommand(),
		a.newLayerExportCommand(),
		a.newLayerInspectCommand(),
		a.newLayerRmCommand(),
		a.newLayerCheckCommand(),
		a.newLayerMountCommand(),
		a.newLayerUnmountCommand(),
	)
	cmd.AddCommand(a.layerActivateCommands()...)
	return cmd
}
