package layers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/wclayer"
)

// LCOWLayer is one read-only Linux layer: an ext4 image, raw or as a fixed VHD.
type LCOWLayer struct {
	VHDPath string
	// Partition must be 0: the whole disk is the file system.
	Partition uint64
}

// LCOWLayers defines a set of LCOW layers.
type LCOWLayers struct {
	// Layers should be in order from top-most layer to bottom-most layer.
	Layers []*LCOWLayer
	// ScratchVHDPath is the writable disk; it is made when it does not exist.
	ScratchVHDPath string
}

// ResourceCloser releases what a mount call acquired. It stands in for hcsshim's
// resources.ResourceCloser.
type ResourceCloser interface {
	Release(ctx context.Context) error
}

// UtilityVM stands in for hcsshim's *uvm.UtilityVM. Containers run on the host here,
// so the only value functions accept is nil.
type UtilityVM struct{}

// SchemaLayer is a layer as the HCS schema (hcsschema.Layer) describes it.
type SchemaLayer struct {
	ID       string `json:"Id,omitempty"`
	Path     string `json:"Path,omitempty"`
	PathType string `json:"PathType,omitempty"`
}

// Unmounted is what UnmountAll undid.
type Unmounted = host.Unmounted

// Errors returned by this package (the host engine's). Failures of a step are
// *Error values wrapping the cause.
var (
	// ErrUnsupportedDisk means a layer or scratch disk cannot be used as it
	// is: a partition, or a scratch holding neither ext4 nor zeros.
	ErrUnsupportedDisk = host.ErrUnsupportedDisk

	// ErrTooManyLayers means more layers than one union can stack (500).
	ErrTooManyLayers = host.ErrTooManyLayers

	// ErrInvalidArgument means a parameter is missing or out of range.
	ErrInvalidArgument = host.ErrInvalidArgument

	// ErrAlreadyMounted means the target of a mount already has something
	// mounted on it, or a scratch disk is in another stack. It matches
	// fs.ErrExist.
	ErrAlreadyMounted = host.ErrAlreadyMounted
)

// Error records the step of a mount call that failed: the operation, the
// layer, disk or directory concerned, and the cause.
type Error = host.Error

// DefaultScratchSize is the size of a scratch disk made by MountLCOWLayers when no
// WithScratchSize option is given: 20 GiB, allocated sparsely.
const DefaultScratchSize = 20 << 30

// Option changes how a stack is mounted.
type Option func(*options) error

type options struct {
	scratchSize int64
	log         *slog.Logger
	// failAt makes the step with this number (1-based, counted over the
	// steps of the plans) fail, to test the unwinding; 0 never.
	failAt int
	// steps, when set, gets the type of every step.
	steps *[]string
}

// errInjected is the failure tests inject into a step.
var errInjected = errors.New("layers: injected failure")

// hostOptions translates the options for the host engine.
func (o *options) hostOptions() []host.StackOption {
	opts := []host.StackOption{host.WithScratchSize(o.scratchSize), host.WithLogger(o.log)}
	if o.failAt > 0 || o.steps != nil {
		var mu sync.Mutex
		n := 0
		opts = append(opts, host.WithStepHook(func(m host.Mount) error {
			mu.Lock()
			defer mu.Unlock()
			n++
			if o.steps != nil {
				*o.steps = append(*o.steps, m.Type)
			}
			if n == o.failAt {
				return errInjected
			}
			return nil
		}))
	}
	return opts
}

// WithScratchSize sets the size in bytes of a scratch disk that has to be made; an
// existing disk keeps its size. It must be a multiple of 1 MiB, at least 32 MiB.
func WithScratchSize(size int64) Option {
	return func(o *options) error {
		if size < 32<<20 || size%(1<<20) != 0 {
			return fmt.Errorf("%w: scratch size %d: want a multiple of 1 MiB, at least 32 MiB", ErrInvalidArgument, size)
		}
		o.scratchSize = size
		return nil
	}
}

// WithLogger logs the steps taken and the failures of cleanups to l. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	}
}

func newOptions(opts []Option) (*options, error) {
	o := &options{scratchSize: DefaultScratchSize, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func checkVM(vm *UtilityVM) error {
	if vm != nil {
		return fmt.Errorf("layers: utility VMs: containers run on the host: %w", errors.ErrUnsupported)
	}
	return nil
}

// GetHCSLayers converts host paths of container layers into HCS schema layers:
// each gets the layer ID of its folder (wclayer.LayerID) and its path. vm must be
// nil.
func GetHCSLayers(ctx context.Context, vm *UtilityVM, paths []string) (layers []SchemaLayer, err error) {
	if err := checkVM(vm); err != nil {
		return nil, err
	}
	return schemaLayers(ctx, paths)
}

// ToHostHcsSchemaLayers converts the paths of read-only layers of a process-isolated
// container into HCS schema layers, as GetHCSLayers does. containerID is not used.
func ToHostHcsSchemaLayers(ctx context.Context, containerID string, roLayers []string) ([]SchemaLayer, error) {
	return schemaLayers(ctx, roLayers)
}

func schemaLayers(ctx context.Context, paths []string) ([]SchemaLayer, error) {
	out := make([]SchemaLayer, 0, len(paths))
	for _, p := range paths {
		id, err := wclayer.LayerID(ctx, p)
		if err != nil {
			return nil, &Error{Op: "layer ID", Path: p, Err: err}
		}
		out = append(out, SchemaLayer{ID: id.String(), Path: p})
	}
	return out, nil
}

// ErrBadTombstones means a layer's tombstones.txt cannot be used: no version
// header, or a name that is not a path inside Files/.
var ErrBadTombstones = host.ErrBadTombstones
