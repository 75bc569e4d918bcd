package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func (a *app) newVHDAttachCommand() *cobra.Command {
	var readOnly bool
	var format string
	cmd := &cobra.Command{
		Use:   "attach [--read-only] DISK",
		Short: "Attach a raw, VHD or VHDX disk as a loop block device",
		Long: `Attach DISK as a loop block device and print the device (/dev/loopN). The
attachment outlives this command; end it with "hcs vhd detach".

Raw images and fixed VHDs are bound to the loop device directly (a fixed VHD
without its footer). Dynamic and differencing VHDs and every VHDX are served
through a raw view: a helper process (this program, in the background) serves
the virtual disk as a file over FUSE, and the loop device is bound to that file.

The format is told from the content: VHDX by its signature, VHD by its footer,
a raw image by the file system or partition table it holds. Any other file (a
blank one, say) is refused unless --format raw says it is a raw image; a VHD
whose footer is cut short is refused as damaged (exit code 3), never taken for
raw. --format vhd or vhdx refuses a file of another format.

A disk is attached at most once (exit code 4 when it is attached already).
Attachments left half-made by a killed command are cleaned up first. Needs root.`,
		Args:    cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error { return checkDiskFormat("format", format) },
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if format != formatRaw {
				got, err := detectFormatPath(path)
				if err != nil && !errors.Is(err, vhd.ErrInvalidFormat) {
					return fmt.Errorf("attach: %w", err)
				}
				if err == nil && format != "auto" && got != format {
					return fmt.Errorf("attach: %s: --format %s, but the file is %s: %w", path, format, got, vhd.ErrInvalidFormat)
				}
				if errors.Is(err, vhd.ErrUnknownFormat) {
					return fmt.Errorf("attach: %w", err)
				}
			}
			at, err := host.AttachDisk(cmd.Context(), path, host.AttachOptions{ReadOnly: readOnly, Raw: format == formatRaw})
			if err != nil {
				return err
			}
			return a.result(at.Device, diskJSON(at))
		}),
	}
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "attach read-only; the disk file is not modified")
	cmd.Flags().StringVar(&format, "format", "auto", "`FORMAT` of DISK: auto (from its content), raw, vhd or vhdx")
	return cmd
}

func (a *app) newVHDDetachCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "detach DEVICE|DISK",
		Short: "Detach a disk attached with hcs vhd attach",
		Long: `Detach the loop device of an attachment, given as the device (/dev/loopN) or
the disk file, and stop its raw view helper if it has one. A device that is
still mounted is refused (exit code 1); one that is not attached gives exit
code 5.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			at, err := host.GetDisk(args[0])
			if err != nil {
				return err
			}
			if err := host.DetachDisk(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.result(fmt.Sprintf("detached %s (%s)", at.Device, at.Disk), diskJSON(at))
		}),
	}
}
