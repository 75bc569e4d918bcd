package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/image"
	"github.com/hostcompute/hostcompute/store"
)

// imageFlags are the flags every image command shares.
type imageFlags struct {
	root string
}

func (a *app) newImageCommand() *cobra.Command {
	f := &imageFlags{}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Pull, push, save, load, list, inspect, tag and remove Windows and Linux images",
		Long: `Images live in the store under --root: their manifests, indexes, configs and
layer blobs by digest in an OCI image layout (<root>/content), and their layers
unpacked into the layer store, one committed layer per chainID, shared between
images. Windows layers are kept losslessly as layer folders, Linux layers as
directories applied over their parents.

References:
  REGISTRY/REPO[:TAG|@DIGEST]   a registry (v2 API; credentials from the Docker
                                config file; 127.0.0.1 and localhost over HTTP)
  oci:DIR[:TAG]                 an OCI image layout directory
  docker-archive:FILE[:TAG]     a docker save tar

Images in the store are named by the reference they were pulled from (or --name),
or by a digest prefix of 12 hex digits or more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&f.root, "root", store.DefaultRoot, "the store's home `DIR` (as hcs store's)")
	cmd.AddCommand(
		a.newImagePullCommand(f),
		a.newImagePushCommand(f),
		a.newImageSaveCommand(f),
		a.newImageLoadCommand(f),
		a.newImageLsCommand(f),
		a.newImageInspectCommand(f),
		a.newImageRmCommand(f),
		a.newImageTagCommand(f),
		a.newImageConvertCommand(f),
		a.newImageAppendCommand(f),
		a.newImageCommitCommand(f),
	)
	return cmd
}

// openImages opens the layer store and the image store beside it; close releases
// both.
func (a *app) openImages(ctx context.Context, f *imageFlags) (*image.Store, func(), error) {
	ls, err := store.Open(ctx, f.root, store.WithLogger(a.log))
	if err != nil {
		return nil, nil, err
	}
	s, err := image.OpenStore(ls, image.WithLogger(a.log))
	if err != nil {
		ls.Close()
		return nil, nil, err
	}
	return s, func() { ls.Close() }, nil
}

// imageOptions are the flags of commands that read from or write to a registry.
type imageOptions struct {
	platform     string
	allPlatforms bool
	foreign      bool
	insecure     bool
	jobs         int
	name         string
}

func (o *imageOptions) register(cmd *cobra.Command, fetch bool) {
	fl := cmd.Flags()
	if fetch {
		fl.StringVar(&o.platform, "platform", "", "the image of an index to take: `OS/ARCH[/VARIANT][:OSVERSION]`, e.g. windows/amd64:10.0.20348.2113 (default: the host's, linux/ARCH)")
		fl.BoolVar(&o.allPlatforms, "all-platforms", false, "keep the whole index: fetch and unpack every image in it")
		fl.StringVar(&o.name, "name", "", "store the image under `NAME` instead of the reference's name")
	}
	fl.BoolVar(&o.foreign, "allow-nondistributable", false, "fetch (or push) non-distributable layers from (to) the URLs they name")
	fl.BoolVar(&o.insecure, "insecure", false, "talk plain HTTP to the registry")
	fl.IntVar(&o.jobs, "jobs", 4, "how many blobs to transfer at once")
}

func (o *imageOptions) options() ([]image.Option, error) {
	var opts []image.Option
	if o.platform != "" {
		p, err := image.ParsePlatform(o.platform)
		if err != nil {
			return nil, usageError{err}
		}
		opts = append(opts, image.WithPlatform(p))
	}
	if o.allPlatforms {
		opts = append(opts, image.WithAllPlatforms())
	}
	if o.foreign {
		opts = append(opts, image.WithForeignLayers())
	}
	if o.insecure {
		opts = append(opts, image.WithInsecure())
	}
	if o.name != "" {
		opts = append(opts, image.WithName(o.name))
	}
	return append(opts, image.WithJobs(o.jobs)), nil
}

// imageText is the text form of an image summary: one line per layer.
func imageText(verb string, s *image.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", verb, s.Name, s.Digest)
	if s.Platform != nil {
		fmt.Fprintf(&b, " (%s)", s.Platform)
	}
	for _, m := range s.Manifests {
		fmt.Fprintf(&b, "\n  %s %s", m.Digest, m.Platform)
		for _, l := range m.Layers {
			fmt.Fprintf(&b, "\n    %s %s", l.Digest, l.Note)
		}
	}
	for _, l := range s.Layers {
		fmt.Fprintf(&b, "\n  layer %s %s", l.Digest, l.Note)
	}
	return b.String()
}

func (a *app) newImageLsCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the stored images",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			list, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tPLATFORM\tMEDIA TYPE")
			for _, i := range list {
				p := "-"
				if i.Platform != nil {
					p = i.Platform.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, i.Digest, p, i.MediaType)
			}
			tw.Flush()
			return a.result(strings.TrimSuffix(b.String(), "\n"), list)
		}),
	}
}

func (a *app) newImageInspectCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show an image's manifests, layers (with their chainIDs and whether they are unpacked) and config",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			sum, err := s.Inspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var b strings.Builder
			layers := sum.Layers
			sum.Layers = nil
			b.WriteString(imageText("image", sum))
			sum.Layers = layers
			for _, l := range sum.Layers {
				fmt.Fprintf(&b, "\n  layer %s diffID %s chainID %s unpacked %v", l.Digest, l.DiffID, l.ChainID, l.Unpacked)
			}
			return a.result(b.String(), sum)
		}),
	}
}

func shortHex(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[i+1 : i+13]
	}
	return d
}

func (a *app) newImageRmCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove images; blobs and layers no other image uses go too",
		Long: `Remove the names, then every blob no remaining image reaches and every layer of
the removed images that no remaining image uses (a layer other layers are built
on, such as a container's, stays). Nothing is printed on success.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			if err := s.Remove(cmd.Context(), args...); err != nil {
				return err
			}
			return a.result("", map[string]any{"removed": args})
		}),
	}
}

func (a *app) newImageTagCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "tag NAME NEWNAME",
		Short: "Give a stored image another name",
		Args:  cobra.ExactArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.openImages(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeFn()
			if err := s.Tag(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			sum, err := s.Inspect(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			return a.result(fmt.Sprintf("tagged %s %s", sum.Name, sum.Digest), sum)
		}),
	}
}
