package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func (a *app) newVHDResizeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resize FILE SIZE",
		Short: "Grow or shrink a disk in place (a differencing VHDX only grows)",
		Long: `Change the virtual size of the VHD or VHDX disk FILE to SIZE, a multiple of
its logical sector size. Growing keeps every byte and adds space that reads as
zeros; the file system inside is not resized. Shrinking is refused (exit code 1,
nothing changed) unless everything past the new end is unallocated or zeros.
A differencing VHDX grows past its parent's size (what lies past the parent's
end reads as zeros) and never shrinks; a differencing VHD cannot be resized.

A VHDX switches to its new size through its log, so that a crash leaves either
the old disk or a log replayed by the next writable open.`,
		Args: cobra.ExactArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			path := args[0]
			size, err := parseSize(args[1])
			if err != nil {
				return usageError{err}
			}
			if _, err := detectFormatPath(path); err != nil && !errors.Is(err, vhd.ErrUnknownFormat) {
				return fmt.Errorf("resize: %w", err)
			}
			// pkg/vhd names what is wrong with anything but a VHD or VHDX.
			d, err := vhd.Open(path, false)
			if err != nil {
				return fmt.Errorf("resize: %w", err)
			}
			format := d.Format().String()
			old := d.Size()
			err = d.Resize(size)
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			if errors.Is(err, vhd.ErrInvalidOptions) {
				return usageError{fmt.Errorf("resize: %w", err)}
			}
			if err != nil {
				return fmt.Errorf("resize: %w", err)
			}
			return a.result(fmt.Sprintf("resized %s disk %s from %d to %d bytes", format, path, old, size),
				vhdResizeResult{Disk: Disk{File: absPath(path), Format: format, VirtualSize: size}, OldSize: old})
		}),
	}
}

// vhdResizeResult is the -o json document of vhd resize.
type vhdResizeResult struct {
	Disk
	OldSize int64 `json:"oldSize"`
}
