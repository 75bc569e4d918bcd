package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/image"
)

func (a *app) newImageConvertCommand(f *imageFlags) *cobra.Command {
	var to, dir string
	var verity bool
	cmd := &cobra.Command{
		Use:   "convert [flags] NAME --to cim|ext4",
		Short: "Convert every layer of a stored image ahead of time: to CIMs (Windows) or ext4 layer images (Linux)",
		Long: `Convert every layer of the stored image NAME into --dir (default
<root>/converted/<image digest>/<to>), one folder per layer named by its chainID:

  --to cim    Windows images: a CIM layer per layer, each forking its parent's CIM
              (<dir>/cim-layers/<chainID>.cim and its region files)
  --to ext4   Linux images: <dir>/<chainID>/layer.vhd, an ext4 image of the layer
              (whiteouts kept as overlay whiteouts) with a fixed VHD footer; with
              --dm-verity a dm-verity hash tree before the footer, root hash also in
              <dir>/<chainID>/root-hash

The output is deterministic: the same image gives the same bytes. Layers already
converted in --dir are kept. The report (-o json) lists each layer's digest,
diffID, chainID, the converted file, its sha256 and size, and the root hash.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if to != image.ToCIM && to != image.ToExt4 {
				return usageErrorf("--to %q: want cim or ext4", to)
			}
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			if dir == "" {
				sum, err := s.Inspect(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				dir = filepath.Join(f.root, "converted", strings.TrimPrefix(sum.Digest, "sha256:"), to)
			}
			// Absolute, so the report's dir, layer and file are (the JSON vocabulary).
			rep, err := s.Convert(cmd.Context(), args[0], to, absPath(dir), verity)
			if err != nil {
				return err
			}
			var b strings.Builder
			fmt.Fprintf(&b, "converted %s %s to %s in %s", rep.Image, rep.Digest, to, rep.Dir)
			for _, l := range rep.Layers {
				fmt.Fprintf(&b, "\n  %s %s %s", shortHex(l.Digest), l.File, l.SHA256)
				if l.RootHash != "" {
					fmt.Fprintf(&b, " root hash %s", l.RootHash)
				}
			}
			return a.result(b.String(), rep)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&to, "to", "", "what to make: `cim` or ext4")
	fl.StringVar(&dir, "dir", "", "where to write the layers (`DIR`)")
	fl.BoolVar(&verity, "dm-verity", false, "add a dm-verity hash tree to ext4 layers")
	cmd.MarkFlagRequired("to")
	return cmd
}

func (a *app) newImageAppendCommand(f *imageFlags) *cobra.Command {
	var spec image.AppendSpec
	var created, platform string
	cmd := &cobra.Command{
		Use:   "append --base NAME --layer TAR|DIR -t NEWNAME",
		Short: "Build a Windows image on Linux: a stored base plus one layer made from a directory or a tar",
		Long: `Make the image NEWNAME: the stored Windows image --base with one more layer,
written as a proper Windows layer (Files/ and Hives/, MSWINDOWS.* records) from:

  a directory     its contents become the layer's Files/
  a plain tar     its files become the layer's Files/
  a Windows layer tar (entries under Files/, Hives/, UtilityVM/)  taken as it is

--base scratch builds an image from no base (its first layer is the appended one,
typically a Windows base layer tar); --platform then gives os, architecture,
os.version and os.features (--platform linux/ARCH builds a Linux image).

A Linux base takes --layer as an OCI layer tar, as it is (no directory).

New files and directories get what Windows gives files a container creates: the
ARCHIVE or DIRECTORY attribute and the security descriptor inherited from their
directory in the base; a name the base has keeps the base's metadata. Times come
from the modification times. The config keeps the base's os, os.version and
os.features; the image is created at --created (default: the base's creation
time), so the same inputs give the same manifest digest. The new layer is unpacked
into the store; push the image with hcs image push.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if created != "" {
				t, err := time.Parse(time.RFC3339, created)
				if err != nil {
					return usageErrorf("--created %q: want an RFC 3339 time", created)
				}
				spec.Created = t
			}
			if platform != "" {
				p, err := image.ParsePlatform(platform)
				if err != nil {
					return usageError{err}
				}
				spec.Platform = p
			} else if spec.Base == image.Scratch {
				return usageErrorf("--base scratch needs --platform windows/ARCH:OSVERSION or linux/ARCH")
			}
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			sum, err := s.Append(cmd.Context(), spec)
			if err != nil {
				return err
			}
			return a.result(imageText("built", sum), sum)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&spec.Base, "base", "", "the stored base image (`NAME`), or scratch")
	fl.StringVar(&platform, "platform", "", "with --base scratch: the image's `OS/ARCH:OSVERSION`, e.g. windows/amd64:10.0.20348.2113")
	fl.StringVar(&spec.Layer, "layer", "", "the new layer's content: a `TAR` or DIR")
	fl.StringVarP(&spec.Name, "tag", "t", "", "the new image's `NAME`")
	fl.StringVar(&created, "created", "", "the image's creation `TIME` (RFC 3339)")
	fl.StringVar(&spec.CreatedBy, "created-by", "", "the history entry's `TEXT`")
	for _, n := range []string{"base", "layer", "tag"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func (a *app) newImageCommitCommand(f *imageFlags) *cobra.Command {
	var base, key, tag string
	cmd := &cobra.Command{
		Use:   "commit --base NAME --key KEY -t NEWNAME",
		Short: "Make an image of a Windows base and the changes of a writable layer over it",
		Long: `Make the image NEWNAME: the stored Windows image --base with one more layer,
the changes of the layer store's active layer KEY (a container's writable layer
prepared over the base's top layer, keyed by its chainID). The changes are read
as a Windows layer: deletions become whiteouts, new files get the metadata Windows
gives files a container creates, files changed from the base keep the base's
metadata. The new layer is unpacked into the store; push the image with
hcs image push.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			sum, err := s.Commit(cmd.Context(), base, key, tag)
			if err != nil {
				return err
			}
			return a.result(imageText("committed", sum), sum)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&base, "base", "", "the stored base image (`NAME`)")
	fl.StringVar(&key, "key", "", "the active layer's `KEY` in the layer store")
	fl.StringVarP(&tag, "tag", "t", "", "the new image's `NAME`")
	for _, n := range []string{"base", "key", "tag"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
