package store

import (
	"context"
	"strings"
)

// Stat returns the description of the layer key, of any kind.
func (s *Store) Stat(ctx context.Context, key string) (Info, error) {
	var info Info
	err := s.view(ctx, func(tx *txn) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		info = r.Info
		return nil
	})
	return info, opErr("stat", key, err)
}

// Update changes the labels of the layer info.Key, the only property that can
// change, and returns its new description. With no fieldpaths the labels become
// info.Labels; "labels" does the same; "labels.NAME" sets (or, when info.Labels
// has no NAME, deletes) that one label. Any other field path fails with
// ErrInvalidArgument. Other fields of info are ignored.
func (s *Store) Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error) {
	var out Info
	for _, fp := range fieldpaths {
		if fp != "labels" && !strings.HasPrefix(fp, "labels.") {
			return Info{}, opErr("update", info.Key, classf(ErrInvalidArgument, "field %q cannot be updated (only labels can)", fp))
		}
	}
	err := s.update(ctx, func(tx *txn) error {
		r, err := getRecord(tx, info.Key)
		if err != nil {
			return err
		}
		if len(fieldpaths) == 0 {
			fieldpaths = []string{"labels"}
		}
		for _, fp := range fieldpaths {
			if fp == "labels" {
				r.Labels = copyLabels(info.Labels)
				continue
			}
			name := strings.TrimPrefix(fp, "labels.")
			if v, ok := info.Labels[name]; ok {
				if r.Labels == nil {
					r.Labels = map[string]string{}
				}
				r.Labels[name] = v
			} else {
				delete(r.Labels, name)
			}
		}
		if len(r.Labels) == 0 {
			r.Labels = nil
		}
		r.Updated = now()
		out = r.Info
		return putRecord(tx, r)
	}, nil)
	return out, opErr("update", info.Key, err)
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Walk calls fn for each layer matching any of filters (all layers when none is
// given), in key order. A filter is a comma-separated list of conditions that
// must all hold, in containerd's filter syntax: "kind==active",
// "parent!=\"\"", "name~=^sha256:", "labels.\"containerd.io/gc.root\"",
// "labels.l==2". Fields: name (or key), parent, kind, format, diffID, chainID,
// labels.NAME. Values may be quoted. fn runs with no lock held, so it may call
// the store; a layer removed meanwhile is still passed to it.
func (s *Store) Walk(ctx context.Context, fn func(context.Context, Info) error, filters ...string) error {
	f, err := parseFilters(filters)
	if err != nil {
		return opErr("walk", "", err)
	}
	var infos []Info
	err = s.view(ctx, func(tx *txn) error {
		lb, _, _, _ := buckets(tx)
		return lb.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(string(k), v)
			if err != nil {
				return err
			}
			if f.match(&r.Info) {
				infos = append(infos, r.Info)
			}
			return nil
		})
	})
	if err != nil {
		return opErr("walk", "", err)
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Usage returns the disk usage of the layer key itself: recorded at commit or
// import for committed layers, measured now for active ones (which takes time
// proportional to their content).
func (s *Store) Usage(ctx context.Context, key string) (Usage, error) {
	var r *record
	err := s.view(ctx, func(tx *txn) error {
		var err error
		r, err = getRecord(tx, key)
		return err
	})
	if err != nil {
		return Usage{}, opErr("usage", key, err)
	}
	if r.Kind == KindCommitted {
		return Usage{Size: r.Size, Inodes: r.Inodes}, nil
	}
	if r.Kind == KindView {
		return Usage{}, nil
	}
	u, err := diskUsage(ctx, s.upperDir(r))
	return u, opErr("usage", key, err)
}

// Mounts returns the mounts of the active layer or view key again, as Prepare or
// View returned them. A committed layer has none (ErrFailedPrecondition): make a
// view of it.
func (s *Store) Mounts(ctx context.Context, key string) ([]Mount, error) {
	var ms []Mount
	err := s.view(ctx, func(tx *txn) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if r.Kind == KindCommitted {
			return classf(ErrFailedPrecondition, "layer %q is committed; make a view of it to mount it", key)
		}
		_, parents, err := parentChain(tx, r.Parent)
		if err != nil {
			return err
		}
		ms, err = s.plan(r, parents)
		return err
	})
	return ms, opErr("mounts", key, err)
}
