package winlayer

import (
	"fmt"
	"strings"
)

// Names inside a layer folder besides Files/, Hives/ and UtilityVM/.
const (
	MetaDir           = "hcsmeta"          // this package's metadata
	metaDB            = "hcsmeta/layer.db" // per-entry Windows metadata
	streamsDir        = "hcsmeta/streams"  // alternate data stream contents, one file each
	LayerChainFile    = "layerchain.json"  // parent folders, immediate parent first
	TombstonesFile    = "tombstones.txt"   // deletions relative to Files, for Windows tools
	stagingMarker     = ".hcs-staging-"
	destroyingMarker  = ".hcs-destroying-"
	tombstonesVersion = "\uFEFFVersion 1.0"
)

// Option configures a Writer.
type Option func(*options) error

type options struct {
	sync bool
}

// WithSync sets whether Close flushes the layer to stable storage before making it
// visible (default true). Without it a machine crash soon after Close may leave a
// visible layer with missing data; a process crash is still safe.
func WithSync(sync bool) Option {
	return func(o *options) error { o.sync = sync; return nil }
}

// Problem is one inconsistency found by Check.
type Problem struct {
	Entry  string // layer-relative name, or a file under hcsmeta/
	Reason string
}

func (p Problem) String() string { return p.Entry + ": " + p.Reason }

// maxFileSize is the largest file NTFS can hold (16 TiB - 64 KiB with 4 KiB clusters is
// the common limit; 256 TiB with 64 KiB clusters). Larger sizes are rejected at once.
const maxFileSize = 256 << 40

// canonicalStreamName returns ":name:$DATA" for "name", ":name" or ":name:$DATA".
func canonicalStreamName(n string) (string, error) {
	n = strings.TrimPrefix(n, ":")
	if i := strings.LastIndexByte(n, ':'); i >= 0 {
		if !strings.EqualFold(n[i+1:], "$DATA") {
			return "", fmt.Errorf("%w: stream type %q is not $DATA", ErrInvalidName, n[i+1:])
		}
		n = n[:i]
	}
	if n == "" || len(n) > 255 || strings.ContainsAny(n, "/\\:\x00") {
		return "", fmt.Errorf("%w: stream name %q", ErrInvalidName, n)
	}
	return ":" + n + ":$DATA", nil
}

// fileKey identifies a file by device and inode, to find its hard links.
type fileKey struct{ dev, ino uint64 }
