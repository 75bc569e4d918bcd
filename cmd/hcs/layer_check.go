package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

func (a *app) newLayerCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check LAYERDIR",
		Short: "Verify a layer folder's invariants",
		Long: `Check that every metadata record of a layer folder has its file, of the right
kind, that every alternate data stream has its content with the recorded size,
that every security descriptor named is stored, and that no stream content is
left without a record. Files without a record are fine: other tools may add
them, and they export with metadata derived from the Linux file.

Exit code 0 when the layer is sound, 3 when problems are found (each printed),
5 when the folder is not a layer.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			problems, err := winlayer.Check(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			lines := make([]string, 0, len(problems))
			for _, p := range problems {
				lines = append(lines, p.String())
			}
			text := "layer " + args[0] + " is sound"
			if len(problems) > 0 {
				text = strings.Join(lines, "\n")
			}
			if err := a.result(text, layerCheckResult{Layer: absPath(args[0]), CheckResult: newCheckResult(lines)}); err != nil {
				return err
			}
			if len(problems) > 0 {
				return fmt.Errorf("check: %d problems in layer %s: %w", len(problems), args[0], winlayer.ErrCorrupt)
			}
			return nil
		}),
	}
}

// layerCheckResult is the -o json document of layer check.
type layerCheckResult struct {
	Layer string `json:"layer"`
	CheckResult
}
