package store_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"github.com/containerd/containerd/v2/pkg/testutil"
	"github.com/containerd/errdefs"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/store"
)

// snapshotter adapts a Store to containerd's snapshots.Snapshotter, translating
// the store's error classes into containerd's errdefs. It is the whole of what a
// containerd proxy plugin needs besides the gRPC service.
type snapshotter struct{ s *store.Store }

var _ snapshots.Snapshotter = snapshotter{}

func errdef(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case errors.Is(err, store.ErrAlreadyExists):
		return fmt.Errorf("%w: %w", errdefs.ErrAlreadyExists, err)
	case errors.Is(err, store.ErrFailedPrecondition):
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case errors.Is(err, store.ErrInvalidArgument):
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	case errors.Is(err, store.ErrUnsupported):
		return fmt.Errorf("%w: %w", errdefs.ErrNotImplemented, err)
	}
	return err
}

func toInfo(i store.Info) snapshots.Info {
	return snapshots.Info{Kind: snapshots.Kind(i.Kind), Name: i.Key, Parent: i.Parent, Labels: i.Labels, Created: i.Created, Updated: i.Updated}
}

func toMounts(ms []store.Mount) []mount.Mount {
	out := make([]mount.Mount, len(ms))
	for i, m := range ms {
		out[i] = mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options}
	}
	return out
}

func storeOpts(opts []snapshots.Opt) ([]store.Opt, error) {
	var info snapshots.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	if info.Parent != "" {
		return nil, fmt.Errorf("%w: rebasing on commit (WithParent)", errdefs.ErrNotImplemented)
	}
	return []store.Opt{store.WithLabels(info.Labels)}, nil
}

func (a snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	i, err := a.s.Stat(ctx, key)
	return toInfo(i), errdef(err)
}

func (a snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	i, err := a.s.Update(ctx, store.Info{Key: info.Name, Labels: info.Labels}, fieldpaths...)
	return toInfo(i), errdef(err)
}

func (a snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	u, err := a.s.Usage(ctx, key)
	return snapshots.Usage{Size: u.Size, Inodes: u.Inodes}, errdef(err)
}

func (a snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	ms, err := a.s.Mounts(ctx, key)
	return toMounts(ms), errdef(err)
}

func (a snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	so, err := storeOpts(opts)
	if err != nil {
		return nil, err
	}
	ms, err := a.s.Prepare(ctx, key, parent, so...)
	return toMounts(ms), errdef(err)
}

func (a snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	so, err := storeOpts(opts)
	if err != nil {
		return nil, err
	}
	ms, err := a.s.View(ctx, key, parent, so...)
	return toMounts(ms), errdef(err)
}

func (a snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	so, err := storeOpts(opts)
	if err != nil {
		return err
	}
	return errdef(a.s.Commit(ctx, name, key, so...))
}

func (a snapshotter) Remove(ctx context.Context, key string) error {
	return errdef(a.s.Remove(ctx, key))
}

func (a snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return errdef(a.s.Walk(ctx, func(ctx context.Context, i store.Info) error { return fn(ctx, toInfo(i)) }, filters...))
}

func (a snapshotter) Close() error { return a.s.Close() }

func TestMain(m *testing.M) {
	host.MaybeRunHelper()
	// containerd's testutil.RequiresRoot reads -test.root from os.Args in an
	// init function (continuity registers the flag first), so as root the test
	// binary runs itself again with it: `go test` as root runs everything.
	if os.Geteuid() == 0 && !slices.Contains(os.Args, "-test.root") && os.Getenv(crashChildEnv) == "" {
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, append(slices.Clone(os.Args), "-test.root"), os.Environ())
		}
		fmt.Fprintln(os.Stderr, "re-executing with -test.root:", err)
		os.Exit(1)
	}
	flag.Parse()
	if runCrashChild() {
		return
	}
	// The host engine's state (attachments of ext4-vhd exports) stays in a
	// directory of the test run's own; children inherit it.
	if os.Getenv("HOSTCOMPUTE_STATE_DIR") == "" {
		d, err := os.MkdirTemp("", "store-test-state-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Setenv("HOSTCOMPUTE_STATE_DIR", d)
		code := m.Run()
		os.RemoveAll(d)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestContainerdSnapshotterSuite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containerd's snapshotter suite mounts overlays: needs root (CAP_SYS_ADMIN)")
	}
	testutil.RequiresRoot(t)
	// The store is an overlayfs snapshotter, and the suite's name for that
	// ("overlayfs") selects the variant of its Rename check without renaming a
	// directory of a lower layer, which overlayfs without redirect_dir refuses
	// (EXDEV), as it does for containerd's own overlayfs snapshotter.
	testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := store.Open(ctx, root)
		if err != nil {
			return nil, nil, err
		}
		return snapshotter{s}, func() error {
			// The test may have closed s; check with a store of its own.
			c, err := store.Open(context.Background(), root, store.WithoutReconcile())
			if err != nil {
				return err
			}
			ps, err := c.Check(context.Background())
			if err == nil && len(ps) > 0 {
				err = fmt.Errorf("check after the test: %v", ps)
			}
			return errors.Join(err, s.Close(), c.Close())
		}, nil
	})
}
