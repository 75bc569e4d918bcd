package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

func (a *app) newLayerRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [flags] LAYERDIR...",
		Short: "Remove layer folders",
		Long: `Remove each layer folder and everything in it. The folder is first renamed
aside, so an interrupted removal leaves no half-removed layer behind; the next
import or rm in the same directory clears the remains.

A path that is missing or is not a layer written by hcs is refused (exit code 5)
unless --force is given: then a missing path is ignored and any other path is
removed whatever it holds. Layers that have this layer as a parent are not
checked. All paths are tried; the exit code is that of the first failure.
Nothing is printed on success.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			var first error
			for _, path := range args {
				if err := cmd.Context().Err(); err != nil {
					return err
				}
				if err := a.removeLayer(cmd.Context(), path, force); err != nil {
					fmt.Fprintf(a.stderr, "hcs: %v\n", err)
					if first == nil {
						first = err
					}
				}
			}
			if first != nil {
				return reportedError{first}
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "ignore missing paths and remove folders that are not layers")
	return cmd
}

func (a *app) removeLayer(ctx context.Context, path string, force bool) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) && force {
		a.log.Debug("not removing a missing path", logKeyLayer, path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("rm: %w", err)
	}
	if !force {
		ok := false
		if st.IsDir() {
			if ok, err = winlayer.Exists(path); err != nil {
				return fmt.Errorf("rm: %w", err)
			}
		}
		if !ok {
			return fmt.Errorf("rm: %w", &notLayerError{path: path, detail: "no layer metadata; use --force to remove it anyway"})
		}
	} else {
		a.log.Debug("removing with --force", logKeyLayer, path)
	}
	return winlayer.Destroy(ctx, path)
}
