package image

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Store holds images: their content (manifests, indexes, configs and layer blobs)
// by digest in an OCI image layout under <root>/content, named in its index.json,
// and their layers unpacked into a Layers store by chainID.
//
// A Store may be used by several goroutines and processes at once: blobs are
// written through locked ingest files and renamed into place when verified, and
// index.json is rewritten under a lock.
type Store struct {
	root    string
	content *content
	layers  Layers
	log     *slog.Logger
}

// Open opens (creating if needed) the image store at root, unpacking layers into
// layers.
func Open(root string, layers Layers, opts ...StoreOption) (*Store, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	c, err := openContent(root)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", root, err)
	}
	s := &Store{root: root, content: c, layers: layers, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// StoreOption configures Open.
type StoreOption func(*Store)

// WithLogger logs decisions (blobs skipped, layers deduplicated) to l.
func WithLogger(l *slog.Logger) StoreOption { return func(s *Store) { s.log = l } }

// ContentDir is the OCI image layout holding the store's blobs.
func (s *Store) ContentDir() string { return s.content.layout }

// Option configures Pull, Push, Save and Load.
type Option func(*options)

type options struct {
	platform     v1.Platform
	allPlatforms bool
	foreign      bool
	progress     Progress
	name         string
	keychain     authn.Keychain
	jobs         int
	insecure     bool
	format       string
}

func makeOptions(opts []Option) *options {
	o := &options{platform: DefaultPlatform(), keychain: authn.DefaultKeychain, jobs: 4, progress: nopProgress{}}
	for _, f := range opts {
		f(o)
	}
	return o
}

// WithPlatform selects the image of an index for p (default: the host's,
// linux/<arch>). Windows os.version is matched as containerd does.
func WithPlatform(p v1.Platform) Option { return func(o *options) { o.platform = p } }

// WithAllPlatforms keeps a whole index: every image in it is fetched and unpacked,
// and the index is what the name refers to.
func WithAllPlatforms() Option { return func(o *options) { o.allPlatforms = true } }

// WithForeignLayers fetches non-distributable layers from the URLs their
// descriptors give (and pushes them). Without it such layers fail with
// ErrForeignLayer.
func WithForeignLayers() Option { return func(o *options) { o.foreign = true } }

// WithProgress reports per-blob progress to p.
func WithProgress(p Progress) Option { return func(o *options) { o.progress = p } }

// WithName stores the pulled or loaded image under name instead of the one the
// reference gives.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithKeychain gives registry credentials (default: the Docker config file,
// $DOCKER_CONFIG/config.json or ~/.docker/config.json).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithJobs bounds how many blobs are fetched or pushed at once (default 4).
func WithJobs(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.jobs = n
		}
	}
}

// WithInsecure talks plain HTTP to the registry (loopback registries always are).
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// Progress receives per-blob events. Calls for different blobs may come from
// different goroutines at once.
type Progress interface {
	// Start announces a blob: id is its digest, what says "layer", "config", ...
	Start(id, what string, total int64)
	// Add counts n more bytes of id.
	Add(id string, n int64)
	// Done ends id: note says "exists", "fetched", "pushed"; err is the failure,
	// if any. A pulled layer is then told again as it is unpacked ("unpacking",
	// "unpacked", "unpacked before"): the last note stands.
	Done(id, note string, err error)
}

type nopProgress struct{}

func (nopProgress) Start(string, string, int64) {}
func (nopProgress) Add(string, int64)           {}
func (nopProgress) Done(string, string, error)  {}

// Summary describes a stored image, the way ls and inspect report it.
type Summary struct {
	Name      string       `json:"name"`
	Digest    string       `json:"digest"`
	MediaType string       `json:"mediaType"`
	Size      int64        `json:"size"`
	Platform  *v1.Platform `json:"platform,omitempty"`
	// Manifests are the images of an index.
	Manifests []Summary `json:"manifests,omitempty"`
	// Layers of an image, base first.
	Layers []LayerSummary  `json:"layers,omitempty"`
	Config json.RawMessage `json:"config,omitempty"`
}

// LayerSummary describes one layer of an image.
type LayerSummary struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	DiffID    string `json:"diffID"`
	ChainID   string `json:"chainID"`
	// Unpacked says the layer is in the layer store; Fetched that this pull
	// brought it (false: already present).
	Unpacked bool   `json:"unpacked"`
	Note     string `json:"note,omitempty"`
}
