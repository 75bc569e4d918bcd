package main

import (
	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/image"
)

func (a *app) newImagePullCommand(f *imageFlags) *cobra.Command {
	var o imageOptions
	cmd := &cobra.Command{
		Use:   "pull [flags] REF",
		Short: "Fetch an image from a registry, an OCI layout or a docker archive and unpack its layers",
		Long: `Fetch the image REF names into the store and unpack its layers.

Every blob is checked against its digest and size; blobs in the store are not
fetched again; an interrupted download resumes where it stopped (the partial
blob is kept by digest). Each layer becomes the layer store's layer keyed by its
chainID, so a layer shared with another image is unpacked once; Windows layers
are kept losslessly, Linux layers applied with OCI whiteouts over their parents.

From an index, --platform chooses the image (Windows os.version matched as
containerd does: same major.minor, and an image build from 20348 up to the host's
on Windows Server 2022 and later hosts, the same build before them);
--all-platforms keeps the whole index. Non-distributable (foreign) layers are
fetched from their URLs only with --allow-nondistributable.

A progress bar per layer is drawn on a terminal. With -o json the result is
{"name", "digest", "mediaType", "size", "platform", "layers": [{"digest",
"diffID", "chainID", "unpacked", "note"}], "manifests"}.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			opts, err := o.options()
			if err != nil {
				return err
			}
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			bars := a.imageProgress()
			sum, err := s.Pull(cmd.Context(), args[0], append(opts, image.WithProgress(bars))...)
			bars.Wait()
			if err != nil {
				return err
			}
			return a.result(imageText("pulled", sum), sum)
		}),
	}
	o.register(cmd, true)
	return cmd
}

func (a *app) newImageLoadCommand(f *imageFlags) *cobra.Command {
	var o imageOptions
	cmd := &cobra.Command{
		Use:   "load [flags] oci:DIR[:TAG] | docker-archive:FILE[:TAG]",
		Short: "Load an image from an OCI layout or a docker archive (pull from a file)",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			opts, err := o.options()
			if err != nil {
				return err
			}
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			bars := a.imageProgress()
			sum, err := s.Load(cmd.Context(), args[0], append(opts, image.WithProgress(bars))...)
			bars.Wait()
			if err != nil {
				return err
			}
			return a.result(imageText("loaded", sum), sum)
		}),
	}
	o.register(cmd, true)
	return cmd
}

func (a *app) newImagePushCommand(f *imageFlags) *cobra.Command {
	var o imageOptions
	cmd := &cobra.Command{
		Use:   "push [flags] NAME [REF]",
		Short: "Send a stored image or index to a registry, byte for byte",
		Long: `Send the image (or index) NAME to the registry reference REF (default: NAME).
Manifests and blobs are sent as stored, so digests do not change; blobs the
registry has are not sent again.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			opts, err := o.options()
			if err != nil {
				return err
			}
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			dest := ""
			if len(args) == 2 {
				dest = args[1]
			}
			bars := a.imageProgress()
			sum, err := s.Push(cmd.Context(), args[0], dest, append(opts, image.WithProgress(bars))...)
			bars.Wait()
			if err != nil {
				return err
			}
			return a.result(imageText("pushed", sum), sum)
		}),
	}
	o.register(cmd, false)
	return cmd
}

func (a *app) newImageSaveCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "save NAME oci:DIR[:TAG] | docker-archive:FILE[:TAG]",
		Short: "Write a stored image to an OCI layout (byte for byte) or a docker archive",
		Long: `Write the image NAME to an OCI image layout (created if missing; the image is
named TAG, default NAME, in its index.json; manifests and blobs are copied as
stored) or to a docker save tar (whose manifest is Docker's own, so only the
config and layer digests are kept).`,
		Args: cobra.ExactArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			sum, err := s.Save(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.result("saved "+sum.Name+" "+sum.Digest+" to "+args[1], sum)
		}),
	}
}
