package hns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"

	"github.com/hostcompute/hostcompute/internal/state"
	"github.com/hostcompute/hostcompute/pkg/guid"
)

// PluginsVersion is the version of github.com/containernetworking/plugins whose
// binaries the project builds (scripts/install-go-peers.sh puts them in
// bin/cni/<PluginsVersion>).
const PluginsVersion = "v1.10.0"

// Defaults of Options, each overridden by an environment variable.
const (
	DefaultStateDir = "/run/hostcompute/hns" // state.Dir("hns"); $HOSTCOMPUTE_HNS_STATE_DIR
	DefaultNetNSDir = "/run/netns"           // $HOSTCOMPUTE_NETNS_DIR; where ip-netns(8) looks
)

// stateName is the network service's directory under the project's state root
// (internal/state: /run/hostcompute, or $HOSTCOMPUTE_STATE_DIR).
const stateName = "hns"

// DefaultPluginDirs are searched for CNI plugins after $HOSTCOMPUTE_CNI_PATH and
// cni/<PluginsVersion> beside the running program (where `make` puts them for
// bin/hcs).
var DefaultPluginDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// Options configure a Store. Zero fields take their defaults.
type Options struct {
	// StateDir holds the records, the address leases and libcni's cache.
	StateDir string
	// NetNSDir is where endpoint namespaces are bound, as <NetNSDir>/hcs-<endpoint ID>.
	NetNSDir string
	// PluginDirs are searched for the CNI plugin binaries.
	PluginDirs []string
	// Logger receives debug records of decisions and swallowed failures; default none.
	Logger *slog.Logger
}

// withDefaults fills the zero fields of o from the environment and the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.StateDir == "" {
		o.StateDir = envOr("HOSTCOMPUTE_HNS_STATE_DIR", state.Dir(stateName))
	}
	if o.NetNSDir == "" {
		o.NetNSDir = envOr("HOSTCOMPUTE_NETNS_DIR", DefaultNetNSDir)
	}
	if len(o.PluginDirs) == 0 {
		if p := os.Getenv("HOSTCOMPUTE_CNI_PATH"); p != "" {
			o.PluginDirs = filepath.SplitList(p)
		}
		if exe, err := os.Executable(); err == nil {
			o.PluginDirs = append(o.PluginDirs, filepath.Join(filepath.Dir(exe), "cni", PluginsVersion))
		}
		o.PluginDirs = append(o.PluginDirs, DefaultPluginDirs...)
	}
	var err error
	if o.StateDir, err = filepath.Abs(o.StateDir); err != nil {
		return o, err
	}
	if o.NetNSDir, err = filepath.Abs(o.NetNSDir); err != nil {
		return o, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Store is the network service's state in one directory. See the package
// documentation for its layout and locking.
type Store struct {
	opts Options
	cni  *libcni.CNIConfig
}

// Record states.
const (
	stateCreating = "creating"
	stateReady    = "ready"
	stateDeleting = "deleting"
)

// recordVersion is the schema version of the records.
const recordVersion = 1

type networkRecord struct {
	Version int `json:"version"`
	State   string
	Network Network
}

type endpointRecord struct {
	Version  int `json:"version"`
	State    string
	Endpoint Endpoint
	// The CNI invocation, kept so that DEL gets exactly what ADD got.
	ContainerID    string
	IfName         string
	CapabilityArgs map[string]any `json:",omitempty"`
	CNIConfig      json.RawMessage
}

// Open opens (creating it if needed) the state directory of opts and finishes what
// processes that died left half done: endpoints being created or deleted are removed
// (CNI DEL, namespace), networks being deleted are removed.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts}
	for _, d := range []string{s.networksDir(), s.endpointsDir(), s.ipamDir(), s.cacheDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, &Error{Op: "open", ID: opts.StateDir, Err: err}
		}
	}
	s.cni = libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, s.cacheDir(), nil)
	if err := s.recover(ctx); err != nil {
		return nil, &Error{Op: "open", ID: opts.StateDir, Err: err}
	}
	return s, nil
}

var (
	defaultMu     sync.Mutex
	defaultStores = map[string]*Store{}
)

// Default returns the store of the default options (the environment variables
// HOSTCOMPUTE_HNS_STATE_DIR, HOSTCOMPUTE_NETNS_DIR and HOSTCOMPUTE_CNI_PATH, else the
// defaults), opened once per process for each distinct configuration.
func Default(ctx context.Context) (*Store, error) {
	opts, err := Options{}.withDefaults()
	if err != nil {
		return nil, err
	}
	key := opts.StateDir + "\x00" + opts.NetNSDir + "\x00" + strings.Join(opts.PluginDirs, ":")
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if s, ok := defaultStores[key]; ok {
		return s, nil
	}
	s, err := Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	defaultStores[key] = s
	return s, nil
}

// StateDir returns the store's directory.
func (s *Store) StateDir() string { return s.opts.StateDir }

func (s *Store) networksDir() string  { return filepath.Join(s.opts.StateDir, "networks") }
func (s *Store) endpointsDir() string { return filepath.Join(s.opts.StateDir, "endpoints") }
func (s *Store) ipamDir() string      { return filepath.Join(s.opts.StateDir, "ipam") }
func (s *Store) cacheDir() string     { return filepath.Join(s.opts.StateDir, "cni-cache") }

func (s *Store) networkFile(id string) string {
	return filepath.Join(s.networksDir(), id+".json")
}
func (s *Store) endpointFile(id string) string {
	return filepath.Join(s.endpointsDir(), id+".json")
}
func (s *Store) resolvConfFile(id string) string {
	return filepath.Join(s.endpointsDir(), id+".resolv.conf")
}
func (s *Store) netnsPath(id string) string {
	return filepath.Join(s.opts.NetNSDir, "hcs-"+id)
}

// writeFileVolatile replaces path with data through a temporary sibling renamed over
// it, without syncing: a process crash leaves the old file or the new one. It is for
// what need not survive a machine crash (see writeRecordSync); everything else goes
// through internal/atomicfile.
func writeFileVolatile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// writeRecord writes a record atomically and durably (internal/state).
func writeRecord(path string, v any) error { return state.WriteRecord(path, v) }

// writeRecordSync writes a record atomically, and durably if durable is set. Marks of
// a change in progress need not be durable: a process crash cannot tear a rename, and
// after a machine crash the namespaces they guard are gone, so the next open removes
// the endpoint whatever its record says (see recover).
func writeRecordSync(path string, v any, durable bool) error {
	if durable {
		return writeRecord(path, v)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileVolatile(path, append(b, '\n'))
}

func readRecord(path string, v any) error {
	return state.ReadRecord(path, recordVersion, v)
}

// removeFile removes path; a missing file is fine. The removal is not synced: one
// lost to a machine crash is redone at the next open, since the namespaces and links
// the file described did not survive the crash either (see recover).
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// recordFiles lists the records of dir.
func recordFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".json") {
			files = append(files, filepath.Join(dir, name))
		}
	}
	sort.Strings(files)
	return files, nil
}

func (s *Store) networkRecords() ([]networkRecord, error) {
	files, err := recordFiles(s.networksDir())
	if err != nil {
		return nil, err
	}
	var recs []networkRecord
	for _, f := range files {
		var r networkRecord
		if err := readRecord(f, &r); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

func (s *Store) endpointRecords() ([]endpointRecord, error) {
	files, err := recordFiles(s.endpointsDir())
	if err != nil {
		return nil, err
	}
	var recs []endpointRecord
	for _, f := range files {
		var r endpointRecord
		if err := readRecord(f, &r); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// recover finishes the work of processes that died holding the lock.
func (s *Store) recover(ctx context.Context) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	// Temporary files of writes a dead process did not finish (every writer holds
	// the lock, so none is in progress).
	for _, dir := range []string{s.networksDir(), s.endpointsDir()} {
		tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	eps, err := s.endpointRecords()
	if err != nil {
		return err
	}
	for _, r := range eps {
		if r.State == stateReady {
			// Only a missing namespace file means the namespace is gone (a reboot,
			// ip netns delete): a file that is not a namespace here may be one in
			// another mount namespace, where the endpoint still works.
			if _, err := os.Lstat(r.Endpoint.NetNS); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
			// The endpoint cannot work; DEL releases its address and rules.
			s.opts.Logger.Debug("removing endpoint whose namespace is gone", "endpoint", r.Endpoint.ID, "netns", r.Endpoint.NetNS)
		} else {
			s.opts.Logger.Debug("removing endpoint left by a dead process", "endpoint", r.Endpoint.ID, "state", r.State)
		}
		if err := s.teardownEndpoint(ctx, &r); err != nil {
			return fmt.Errorf("removing endpoint %s left %s: %w", r.Endpoint.ID, r.State, err)
		}
	}
	nets, err := s.networkRecords()
	if err != nil {
		return err
	}
	for _, r := range nets {
		if r.State == stateReady {
			continue
		}
		s.opts.Logger.Debug("removing network left by a dead process", "network", r.Network.ID, "state", r.State)
		if err := s.teardownNetwork(ctx, &r); err != nil {
			return fmt.Errorf("removing network %s left %s: %w", r.Network.ID, r.State, err)
		}
	}
	return nil
}

func newID() string {
	g, err := guid.NewV4()
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return g.String()
}

// lock takes the exclusive lock of the state directory; unlock releases it.
func (s *Store) lock() (unlock func(), err error) {
	l, err := state.LockFile(filepath.Join(s.opts.StateDir, "lock"))
	if err != nil {
		return nil, err
	}
	return func() { l.Close() }, nil
}
