package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
)

// DefaultRoot is the home directory of the store of the CLI (hcs --root).
const DefaultRoot = "/var/lib/hostcompute"

// schemaVersion is the version of the records in meta.db. A store written by a
// later version is refused rather than misread.
const schemaVersion = 1

// Names under the store's root.
const (
	lockFile   = "store.lock"
	dbFile     = "meta.db"
	layersDir  = "layers"  // layers/<id>: one directory per layer, named by its record's ID
	stagingDir = "staging" // staging/<random>: imports and other work in progress, flock-held by their writer
	trashDir   = "trash"   // trash/<id>-<random>: removed layers being deleted, flock-held by their remover
)

// Buckets of meta.db: v1/layers (key → JSON record), v1/ids (8-byte big-endian
// ID → key), v1/children ("parent\x00child" → nothing), v1/mounts (mount record
// ID → JSON mount record).
var (
	bucketV1       = []byte("v1")
	bucketLayers   = []byte("layers")
	bucketIDs      = []byte("ids")
	bucketChildren = []byte("children")
	bucketMounts   = []byte("mounts")
	keyVersion     = []byte("version")
)

// Store is a layer store under one root directory. Its methods may be called from
// any number of goroutines and processes at once: see the package documentation
// for the locking.
type Store struct {
	root   string
	log    *slog.Logger
	lockTO time.Duration
	closed atomic.Bool

	volatileOnce sync.Once
	volatile     string // see volatilePath
}

// OpenOption configures Open.
type OpenOption func(*openOptions) error

type openOptions struct {
	log         *slog.Logger
	lockTimeout time.Duration
	noReconcile bool
}

// WithLogger logs the store's decisions (what cleanup removed, failures it
// swallowed) to l. The default logs nothing.
func WithLogger(l *slog.Logger) OpenOption {
	return func(o *openOptions) error { o.log = l; return nil }
}

// WithLockTimeout bounds how long an operation waits for another process holding
// the store's lock (default one minute); past it the operation fails with
// ErrLocked.
func WithLockTimeout(d time.Duration) OpenOption {
	return func(o *openOptions) error {
		if d <= 0 {
			return classf(ErrInvalidArgument, "lock timeout %v is not positive", d)
		}
		o.lockTimeout = d
		return nil
	}
}

// WithoutReconcile opens the store without cleaning up after crashed processes,
// which is what Check needs to see the state as it is.
func WithoutReconcile() OpenOption {
	return func(o *openOptions) error { o.noReconcile = true; return nil }
}

// Open opens the store at root, creating it when it does not exist, and
// reconciles it: what crashed processes left (staging directories, mounts of
// staged work, half-removed and unreferenced layer directories, stale mount
// records) is removed before Open returns.
func Open(ctx context.Context, root string, opts ...OpenOption) (*Store, error) {
	o := openOptions{log: slog.New(slog.DiscardHandler), lockTimeout: time.Minute}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, opErr("open", "", err)
		}
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, opErr("open", "", err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	if strings.ContainsAny(abs, ":,") {
		// Overlay mount options separate lower directories with ':' and
		// options with ','.
		return nil, opErr("open", "", classf(ErrInvalidArgument, "store root %s holds ':' or ',', which overlay mount options cannot carry", abs))
	}
	s := &Store{root: abs, log: o.log, lockTO: o.lockTimeout}
	for _, d := range []string{abs, s.path(layersDir), s.path(stagingDir), s.path(trashDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, opErr("open", "", err)
		}
	}
	err = s.update(ctx, func(tx *txn) error {
		b, err := tx.CreateBucketIfNotExists(bucketV1)
		if err != nil {
			return err
		}
		if v := b.Get(keyVersion); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil || n > schemaVersion {
				return classf(ErrCorrupt, "%s has schema version %q; this program reads version %d", s.path(dbFile), v, schemaVersion)
			}
		} else if err := b.Put(keyVersion, []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketLayers, bucketIDs, bucketChildren, bucketMounts} {
			if _, err := b.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if b.Bucket(bucketChains) == nil {
			// A new store, or one from before the parent chain index.
			if err := rebuildChains(tx, committedRecords(tx)); err != nil {
				return err
			}
		}
		if o.noReconcile {
			return nil
		}
		_, err = s.reconcile(ctx, tx)
		return err
	}, nil)
	if err != nil {
		return nil, opErr("open", "", err)
	}
	return s, nil
}

// Root returns the store's root directory, absolute.
func (s *Store) Root() string { return s.root }

// Close makes the active layers and views that Prepare and View left pending
// durable (one synced transaction, when there are any, see the package
// documentation) and releases the store. Later calls fail with ErrClosed; Close
// itself may be called again and returns nil. Nothing else is held between
// calls (each operation takes the locks it needs).
func (s *Store) Close() error {
	if s.closed.Load() {
		return nil
	}
	var err error
	if s.pending(context.Background()) {
		err = s.update(context.Background(), func(*txn) error { return nil }, nil)
	}
	s.closed.Store(true)
	return opErr("close", "", err)
}

// pending says whether the volatile file holds records not yet in meta.db.
func (s *Store) pending(ctx context.Context) bool {
	x, err := s.begin(ctx, modeRead)
	if err != nil {
		return false
	}
	defer x.end()
	return x.vol != nil && hasPending(x.vol)
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) layerDir(id uint64) string {
	return s.layersPrefix() + strconv.FormatUint(id, 10)
}

// layersPrefix is "<root>/layers/". Layer paths are joined by hand rather than
// with filepath.Join: root is absolute and clean, and Prepare and View build the
// path of every parent.
func (s *Store) layersPrefix() string {
	if s.root == "/" {
		return "/" + layersDir + "/"
	}
	return s.root + "/" + layersDir + "/"
}

// session is one locked use of the store: the flock on store.lock and the bbolt
// databases opened under it (meta.db, and the volatile file of this boot when
// there is one). Writers hold the flock exclusively, readers shared, so bbolt's
// own file lock (taken with the same mode) never waits; its timeout is only a
// safety net.
type session struct {
	lock *os.File
	db   *bolt.DB
	vol  *bolt.DB // nil when there is none
}

// Modes of a session.
const (
	modeRead     = iota // shared lock; meta.db and the volatile file read-only
	modeWrite           // exclusive lock; meta.db read-write, the volatile file to fold
	modeVolatile        // exclusive lock; meta.db read-only, the volatile file read-write
)

func (s *Store) begin(ctx context.Context, mode int) (*session, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.path(lockFile), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if mode != modeRead {
		how = unix.LOCK_EX
	}
	if err := flockWait(ctx, f, how, s.lockTO); err != nil {
		f.Close()
		return nil, err
	}
	db, err := bolt.Open(s.path(dbFile), 0o600, &bolt.Options{Timeout: s.lockTO, ReadOnly: mode != modeWrite})
	if err != nil {
		f.Close()
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s: %w", ErrLocked, s.path(dbFile), err)
		}
		return nil, fmt.Errorf("opening %s: %w", s.path(dbFile), err)
	}
	x := &session{lock: f, db: db}
	if x.vol, err = s.openVolatile(mode != modeRead, mode == modeVolatile); err != nil {
		x.end()
		return nil, fmt.Errorf("opening %s: %w", s.volatilePath(), err)
	}
	return x, nil
}

func (x *session) end() error {
	err := x.db.Close()
	if x.vol != nil {
		err = errors.Join(err, x.vol.Close())
	}
	x.lock.Close() // releases the flock
	return err
}

// flockWait takes the flock how on f, waiting at most timeout or until ctx ends.
func flockWait(ctx context.Context, f *os.File, how int, timeout time.Duration) error {
	fd := int(f.Fd())
	if err := unix.Flock(fd, how|unix.LOCK_NB); err == nil {
		return nil
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	// A blocking flock wakes as soon as the holder lets go, where polling would
	// sleep; it runs on its own goroutine so that the wait can be abandoned.
	done := make(chan error, 1)
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	go func() {
		err := unix.Flock(dup, how)
		for errors.Is(err, unix.EINTR) {
			err = unix.Flock(dup, how)
		}
		done <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	abandon := func() {
		// The goroutine may still get the lock: its descriptor shares f's open
		// file description, so closing both after it returns releases it.
		go func() { <-done; unix.Close(dup) }()
	}
	select {
	case err := <-done:
		unix.Close(dup) // the lock belongs to the open file description, which f keeps
		if err != nil {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		return nil
	case <-t.C:
		abandon()
		return fmt.Errorf("%w: waited %v for %s", ErrLocked, timeout, f.Name())
	case <-ctx.Done():
		abandon()
		return ctx.Err()
	}
}

// update runs fn in a write transaction of meta.db under the exclusive lock;
// after, when not nil, runs once the transaction has committed, still under the
// lock. The transaction first folds the pending records of the volatile file
// into meta.db (see volatile.go), so fn sees every record in meta.db alone.
func (s *Store) update(ctx context.Context, fn func(tx *txn) error, after func()) error {
	x, err := s.begin(ctx, modeWrite)
	if err != nil {
		return err
	}
	var seq uint64
	folded := false
	err = x.db.Update(func(tx *bolt.Tx) error {
		var moved []string
		if x.vol != nil && tx.Bucket(bucketV1) != nil {
			err := x.vol.View(func(vt *bolt.Tx) error {
				var err error
				moved, err = fold(tx, vt)
				return err
			})
			if err != nil {
				return fmt.Errorf("moving the records of %s into %s: %w", s.volatilePath(), s.path(dbFile), err)
			}
			folded = true
		}
		if err := fn(&txn{Tx: tx}); err != nil {
			return err
		}
		if err := s.syncFolded(tx, moved); err != nil {
			return err
		}
		if v1 := tx.Bucket(bucketV1); v1 != nil && v1.Bucket(bucketLayers) != nil {
			seq = v1.Bucket(bucketLayers).Sequence()
		}
		return nil
	})
	if err == nil && folded {
		// meta.db holds them now, durably: what stays in the volatile file is
		// stale, and readers skip it until this delete lands.
		if derr := x.vol.Update(func(vt *bolt.Tx) error { return dropStale(vt, seq, true) }); derr != nil {
			s.log.Warn("deleting folded records from the volatile file", "path", s.volatilePath(), "error", derr)
		}
	}
	if err == nil && after != nil {
		after()
	}
	if cerr := x.end(); err == nil {
		err = cerr
	}
	return err
}

// updateVolatile runs fn for Prepare and View: under the exclusive lock, with
// meta.db read-only and writes going to the volatile file, committed without
// waiting for the disk. Without a volatile file (no boot ID) it is update.
func (s *Store) updateVolatile(ctx context.Context, fn func(tx *txn) error) error {
	if s.volatilePath() == "" {
		return s.update(ctx, fn, nil)
	}
	x, err := s.begin(ctx, modeVolatile)
	if err != nil {
		return err
	}
	err = x.db.View(func(tx *bolt.Tx) error {
		return x.vol.Update(func(vt *bolt.Tx) error {
			var seq uint64
			if v1 := tx.Bucket(bucketV1); v1 != nil && v1.Bucket(bucketLayers) != nil {
				seq = v1.Bucket(bucketLayers).Sequence()
			}
			if err := volatileBuckets(vt); err != nil {
				return err
			}
			if err := dropStale(vt, seq, false); err != nil {
				return err
			}
			return fn(&txn{Tx: tx, vol: vt, toVol: true})
		})
	})
	if cerr := x.end(); err == nil {
		err = cerr
	}
	return err
}

// view runs fn in a read transaction under the shared lock.
func (s *Store) view(ctx context.Context, fn func(tx *txn) error) error {
	x, err := s.begin(ctx, modeRead)
	if err != nil {
		return err
	}
	err = x.db.View(func(tx *bolt.Tx) error {
		if x.vol == nil {
			return fn(&txn{Tx: tx})
		}
		return x.vol.View(func(vt *bolt.Tx) error {
			return fn(&txn{Tx: tx, vol: vt, stale: staleVolatile(tx, vt)})
		})
	})
	if cerr := x.end(); err == nil {
		err = cerr
	}
	return err
}

// newID allocates the ID of a new layer: in meta.db, or for Prepare and View
// in the volatile file, past every ID meta.db has given out.
func newID(tx *txn) (uint64, error) {
	lb, _, _, _ := buckets(tx)
	if !tx.toVol {
		return lb.NextSequence()
	}
	id := max(lb.m.Sequence(), lb.v.Sequence()) + 1
	return id, lb.v.SetSequence(id)
}

// record is what meta.db keeps per layer.
type record struct {
	ID uint64 `json:"id"`
	Info
	// HasDir says whether layers/<ID> exists for the layer (a view over a
	// parent of the linux-dir format needs none).
	HasDir bool `json:"hasDir,omitempty"`
}

func idKey(id uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return b[:]
}

func childKey(parent, child string) []byte {
	return append(append([]byte(parent), 0), child...)
}

// getRecord reads the record of key: ErrNotFound when there is none, ErrCorrupt
// when it does not decode.
func getRecord(tx *txn, key string) (*record, error) {
	lb, _, _, _ := buckets(tx)
	v := lb.Get([]byte(key))
	if v == nil {
		return nil, classf(ErrNotFound, "no layer %q", key)
	}
	return decodeRecord(key, v)
}

func decodeRecord(key string, v []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, classf(ErrCorrupt, "record of layer %q (%d bytes): %v", key, len(v), err)
	}
	if r.Key != key || r.ID == 0 {
		return nil, classf(ErrCorrupt, "record of layer %q names key %q, ID %d", key, r.Key, r.ID)
	}
	return &r, nil
}

// decodeLink reads only what a parent chain needs of the record of key (ID,
// key, parent, kind, format), without decoding the rest: it is Prepare's and
// View's cost per parent. Records are written by json.Marshal of record, whose
// fields come in that order; a record that does not start that way (escaped
// strings, another writer) is decoded in full instead.
func decodeLink(key string, v []byte) (*record, error) {
	r := &record{}
	rest, ok := bytes.CutPrefix(v, []byte(`{"id":`))
	if !ok || !bytes.HasSuffix(v, []byte("}")) {
		return decodeRecord(key, v)
	}
	// Parsed by hand, as the fields below are: this runs once per parent.
	var id uint64
	i := 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		d := uint64(rest[i] - '0')
		if id > (math.MaxUint64-d)/10 {
			return decodeRecord(key, v)
		}
		id = id*10 + d
	}
	if i == 0 {
		return decodeRecord(key, v)
	}
	rest = rest[i:]
	field := func(prefix []byte, optional bool) ([]byte, bool) {
		after, ok := bytes.CutPrefix(rest, prefix)
		if !ok {
			return nil, optional
		}
		end := bytes.IndexByte(after, '"')
		if end < 0 || bytes.IndexByte(after[:end], '\\') >= 0 {
			return nil, false
		}
		rest = after[end+1:]
		return after[:end], true
	}
	k, ok1 := field(linkKey, false)
	parent, ok2 := field(linkParent, true)
	kind, ok3 := field(linkKind, false)
	format, ok4 := field(linkFormat, false)
	if !ok1 || !ok2 || !ok3 || !ok4 || string(k) != key || id == 0 {
		return decodeRecord(key, v)
	}
	r.ID, r.Key, r.Parent, r.Kind, r.Format = id, key, string(parent), kindOf(kind), internFormat(format)
	return r, nil
}

// The fields decodeLink reads, as json.Marshal writes them.
var (
	linkKey    = []byte(`,"key":"`)
	linkParent = []byte(`,"parent":"`)
	linkKind   = []byte(`,"kind":"`)
	linkFormat = []byte(`,"format":"`)
)

// kindOf is ParseKind of b, without a copy for the names json.Marshal writes.
func kindOf(b []byte) Kind {
	switch string(b) {
	case "active":
		return KindActive
	case "committed":
		return KindCommitted
	case "view":
		return KindView
	}
	return ParseKind(string(b))
}

// internFormat returns the Format named by b, without a copy for the formats
// the store makes.
func internFormat(b []byte) Format {
	for _, f := range []Format{FormatLinuxDir, FormatWindowsFolder, FormatCIM, FormatExt4VHD, FormatScratchDisk} {
		if string(b) == string(f) {
			return f
		}
	}
	return Format(b)
}

// parentChain returns, for Prepare and View, the record of parent (holding
// only what decodeLink reads) and the IDs of its line: parent's own first, then
// its parent's, down to the bottom layer. The line comes from the parent chain
// index (chains.go) where it has an entry, else from the records, one parent
// at a time.
func parentChain(tx *txn, parent string) (*record, []uint64, error) {
	if parent == "" {
		return nil, nil, nil
	}
	lb, _, _, _ := buckets(tx)
	var top *record
	var ids []uint64
	for p, child := parent, ""; p != ""; {
		v := lb.Get([]byte(p))
		if v == nil {
			if top != nil {
				return nil, nil, classf(ErrCorrupt, "layer %q names parent %q, which has no record", child, p)
			}
			return nil, nil, classf(ErrNotFound, "no layer %q", p)
		}
		r, err := decodeLink(p, v)
		if err != nil {
			return nil, nil, err
		}
		if top == nil {
			top = r
		}
		if r.Kind == KindCommitted {
			if line, ok := cachedChain(tx, r.ID); ok {
				if ids == nil {
					return top, line, nil
				}
				return top, append(ids, line...), nil
			}
		}
		ids = append(ids, r.ID)
		if len(ids) > 100000 {
			return nil, nil, classf(ErrCorrupt, "parent chain of %q loops", parent)
		}
		child, p = r.Key, r.Parent
	}
	return top, ids, nil
}

func putRecord(tx *txn, r *record) error {
	lb, ib, _, _ := buckets(tx)
	v, err := encodeRecord(r)
	if err != nil {
		return err
	}
	if err := lb.Put([]byte(r.Key), v); err != nil {
		return err
	}
	if err := ib.Put(idKey(r.ID), []byte(r.Key)); err != nil {
		return err
	}
	if r.Kind == KindCommitted {
		return putChain(tx, r)
	}
	return nil
}

// idsOf returns the IDs of records.
func idsOf(rs []*record) []uint64 {
	ids := make([]uint64, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

// chain returns the records of key's parents, immediate parent first.
func chain(tx *txn, parent string) ([]*record, error) {
	var out []*record
	for p := parent; p != ""; {
		r, err := getRecord(tx, p)
		if err != nil {
			if errors.Is(err, ErrNotFound) && len(out) > 0 {
				return nil, classf(ErrCorrupt, "layer %q names parent %q, which has no record", out[len(out)-1].Key, p)
			}
			return nil, err
		}
		out = append(out, r)
		if len(out) > 100000 {
			return nil, classf(ErrCorrupt, "parent chain of %q loops", parent)
		}
		p = r.Parent
	}
	return out, nil
}

func hasChildren(tx *txn, key string) bool {
	_, _, cb, _ := buckets(tx)
	prefix := childKey(key, "")
	return cb.hasPrefix(prefix)
}

// now is the time stamps' clock, in UTC without a monotonic reading so that it
// survives a round trip through the records unchanged.
func now() time.Time { return time.Now().UTC().Round(0) }

// syncDir makes the entries of dir durable.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
