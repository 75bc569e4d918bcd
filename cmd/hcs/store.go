package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/store"
)

// storeFlags holds the flags shared by the store commands.
type storeFlags struct {
	root string
}

func (a *app) newStoreCommand() *cobra.Command {
	sf := &storeFlags{}
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Inspect and maintain the layer store",
		Long: `Inspect and maintain the layer store: layers by key under one home directory
(--root), with containerd's snapshot kinds (active, view, committed), their
parents, formats, labels, usage and digests, in a bbolt database (meta.db) beside
one directory per layer.

Every command but check first reconciles the store: what crashed processes left
(staging directories, mounts of staged work, unreferenced layer directories,
stale mount records) is removed. check reports without changing anything;
repair mends damage check finds.`,
	}
	cmd.PersistentFlags().StringVar(&sf.root, "root", store.DefaultRoot, "the store's home `DIR`")
	cmd.AddCommand(a.newStoreLsCommand(sf), a.newStoreInspectCommand(sf), a.newStoreCheckCommand(sf),
		a.newStoreRepairCommand(sf), a.newStoreGCCommand(sf))
	return cmd
}

func (a *app) openStore(ctx context.Context, sf *storeFlags, opts ...store.OpenOption) (*store.Store, error) {
	return store.Open(ctx, sf.root, append([]store.OpenOption{store.WithLogger(a.log)}, opts...)...)
}

func (a *app) newStoreLsCommand(sf *storeFlags) *cobra.Command {
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List layers",
		Long: `List the layers, in key order: key, kind, format, parent, size (committed
layers) and creation time. --filter takes containerd's filter syntax and may be
repeated (a layer matching any filter is listed): kind==active,
labels."containerd.io/gc.root", parent==KEY, name~=REGEXP, format==linux-dir.
With -o json, an array of layers.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), sf)
			if err != nil {
				return err
			}
			defer s.Close()
			infos := []storeInfo{}
			err = s.Walk(cmd.Context(), func(_ context.Context, i store.Info) error {
				infos = append(infos, newStoreInfo(i))
				return nil
			}, filters...)
			if err != nil {
				if errors.Is(err, store.ErrInvalidArgument) {
					return usageError{err}
				}
				return err
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tKIND\tFORMAT\tPARENT\tSIZE\tCREATED")
			for _, i := range infos {
				size := "-"
				if i.Kind == store.KindCommitted {
					size = humanBytes(i.Size)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Key, i.Kind, i.Format, orDash(i.Parent), size, i.Info.Created.Format(time.RFC3339))
			}
			tw.Flush()
			return a.result(strings.TrimSuffix(b.String(), "\n"), infos)
		}),
	}
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "list only layers matching `FILTER` (repeatable)")
	return cmd
}

// storeInfo is a layer's record in the JSON vocabulary: its times are
// creationTime and updateTime, RFC 3339 in UTC (meta.db keeps store.Info's
// own names, which the shallower fields here hide).
type storeInfo struct {
	store.Info
	Created      *struct{} `json:"created,omitempty"`
	Updated      *struct{} `json:"updated,omitempty"`
	CreationTime string    `json:"creationTime"`
	UpdateTime   string    `json:"updateTime"`
}

func newStoreInfo(i store.Info) storeInfo {
	return storeInfo{Info: i, CreationTime: jsonTime(i.Created), UpdateTime: jsonTime(i.Updated)}
}

// storeLayer is what inspect shows of a layer.
type storeLayer struct {
	storeInfo
	Usage  *store.Usage  `json:"usage,omitempty"`
	Mounts []store.Mount `json:"mounts,omitempty"`
}

func (a *app) newStoreInspectCommand(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect KEY...",
		Short: "Show layers",
		Long: `Show each layer: key, kind, format, parent, labels, digests, times, its usage
(measured now for active layers) and, for active layers and views, the mounts
that show it. With -o json one layer is an object and several an array. A
missing key gives exit code 5.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := a.openStore(ctx, sf)
			if err != nil {
				return err
			}
			defer s.Close()
			var out []storeLayer
			var b strings.Builder
			for _, key := range args {
				i, err := s.Stat(ctx, key)
				if err != nil {
					return err
				}
				l := storeLayer{storeInfo: newStoreInfo(i)}
				if u, err := s.Usage(ctx, key); err == nil {
					l.Usage = &u
				} else {
					return err
				}
				if i.Kind != store.KindCommitted {
					if l.Mounts, err = s.Mounts(ctx, key); err != nil {
						return err
					}
				}
				out = append(out, l)
				if b.Len() > 0 {
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "Key:      %s\nKind:     %s\nFormat:   %s\nParent:   %s\n", i.Key, i.Kind, i.Format, orDash(i.Parent))
				fmt.Fprintf(&b, "Usage:    %s in %d inodes\n", humanBytes(l.Usage.Size), l.Usage.Inodes)
				if i.DiffID != "" {
					fmt.Fprintf(&b, "DiffID:   %s\n", i.DiffID)
				}
				if i.ChainID != "" {
					fmt.Fprintf(&b, "ChainID:  %s\n", i.ChainID)
				}
				fmt.Fprintf(&b, "Created:  %s\nUpdated:  %s\n", i.Created.Format(time.RFC3339Nano), i.Updated.Format(time.RFC3339Nano))
				for k, v := range i.Labels {
					fmt.Fprintf(&b, "Label:    %s=%s\n", k, v)
				}
				for _, m := range l.Mounts {
					fmt.Fprintf(&b, "Mount:    %s\n", m)
				}
			}
			if len(out) == 1 {
				return a.result(strings.TrimSuffix(b.String(), "\n"), out[0])
			}
			return a.result(strings.TrimSuffix(b.String(), "\n"), out)
		}),
	}
}

// problemsResult is the JSON of check, repair and gc.
type problemsResult struct {
	Root     string          `json:"root"`
	OK       bool            `json:"ok"`
	Problems []store.Problem `json:"problems"`
}

func problemsText(verb string, ps []store.Problem) string {
	if len(ps) == 0 {
		return verb + ": nothing"
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROBLEM\tKEY\tPATH\tDETAIL\tREPAIR")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Kind, orDash(p.Key), orDash(p.Path), p.Detail, p.Repair)
	}
	tw.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

func (a *app) newStoreCheckCommand(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the store's records against its files and the kernel",
		Long: `Compare the records with the layer directories and the mount table, changing
nothing, and list every problem: a record whose layer directory is gone
(missing-directory), a mount record of a process that is gone
(stale-mount-record), a record whose parent has no record (dangling-parent), a
record that does not decode (corrupt-record), disagreeing indexes, and what
crashed processes left (dead-staging, trash, orphan-directory), which any other
store command cleans. Exit code 0 when there is nothing to report, 3 otherwise.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), sf, store.WithoutReconcile())
			if err != nil {
				return err
			}
			defer s.Close()
			ps, err := s.Check(cmd.Context())
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []store.Problem{}
			}
			if err := a.result(problemsText("problems", ps), problemsResult{Root: s.Root(), OK: len(ps) == 0, Problems: ps}); err != nil {
				return err
			}
			if len(ps) > 0 {
				return reportedError{fmt.Errorf("%w: %d problems in the store at %s", errStoreDamaged, len(ps), s.Root())}
			}
			return nil
		}),
	}
}

// errStoreDamaged is the class of a check that found problems (exit code 3).
var errStoreDamaged = errors.New("store check found problems")

func (a *app) newStoreRepairCommand(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "repair",
		Short: "Mend what check finds",
		Long: `Mend what check finds and list what was done: records that do not decode,
whose layer directory is gone or whose parent has no record are deleted (and,
repeatedly, the layers above them), the indexes are rebuilt from the records,
stale mounts are unmounted and their records deleted, and what no record
references is removed. A deleted record's layer is lost: repair makes the store
consistent, it cannot bring content back.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), sf, store.WithoutReconcile())
			if err != nil {
				return err
			}
			defer s.Close()
			ps, err := s.Repair(cmd.Context())
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []store.Problem{}
			}
			return a.result(problemsText("repaired", ps), problemsResult{Root: s.Root(), OK: true, Problems: ps})
		}),
	}
}

func (a *app) newStoreGCCommand(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove what no record references",
		Long: `Remove what no record references — staging directories of writers that died
and the mounts they made, removed layers not yet deleted, layer directories no
record names, stale mount records — and list what was removed.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), sf, store.WithoutReconcile())
			if err != nil {
				return err
			}
			defer s.Close()
			ps, err := s.GC(cmd.Context())
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []store.Problem{}
			}
			return a.result(problemsText("removed", ps), problemsResult{Root: s.Root(), OK: true, Problems: ps})
		}),
	}
}
