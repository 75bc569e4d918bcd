package main

import (
	"fmt"
	"github.com/hostcompute/hostcompute/host"

	"github.com/spf13/cobra"
)

func (a *app) newVHDAttachCommand() *cobra.Command {
	var readOnly bool
	cmd := &cobra.Command{
		Use:   "attach [--read-only] DISK",
		Short: "Attach a raw, VHD or VHDX disk as a loop block device",
		Long: `Attach DISK as a loop block device and print the device (/dev/loopN). The
attachment outlives this command; end it with "hcs vhd detach".

Raw images and fixed VHDs are bound to the loop device directly (a fixed VHD
without its footer). Dynamic and differencing VHDs and every VHDX are served
through a raw view: a helper process (this program, in the background) serves
the virtual disk as a file over FUSE, and the loop device is bound to that file.

A disk is attached at most once (exit code 4 when it is attached already).
Attachments left half-made by a killed command are cleaned up first. Needs root.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			at, err := host.AttachDisk(cmd.Context(), args[0], host.AttachOptions{ReadOnly: readOnly})
			if err != nil {
				return err
			}
			return a.result(at.Device, at)
		}),
	}
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "attach read-only; the disk file is not modified")
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
			return a.result(fmt.Sprintf("detached %s (%s)", at.Device, at.Disk), at)
		}),
	}
}
