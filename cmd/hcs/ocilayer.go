package main

import (
	"github.com/spf13/cobra"
)

func (a *app) newOCILayerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ocilayer",
		Short: "Apply and produce OCI Linux layer tars",
		Long: `OCI Linux layers are tars of files, directories, symlinks, hard links, devices
and fifos, with ".wh.NAME" entries deleting NAME from the layers below and
".wh..wh..opq" making a directory opaque.

apply extracts a layer onto a root directory assembled from several layers,
confining every path to that directory. diff writes the layer held by an
overlayfs upper directory.

Tar paths are given with -f/--file, "-" meaning standard input or output. Input
may be plain, gzip or zstd; the compression is recognised from its first bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		a.newOCILayerApplyCommand(),
		a.newOCILayerDiffCommand(),
	)
	return cmd
}
