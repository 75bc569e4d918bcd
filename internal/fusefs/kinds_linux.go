package fusefs

import (
	"sync"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a file system built by an OpenFunc, ready to be served.
type FS struct {
	// Root is the root directory node.
	Root gofs.InodeEmbedder
	// Close, if set, runs in the helper after the kernel has unmounted the
	// file system (or when the mount fails), before the helper exits.
	Close func() error
	// Options, if set, adjusts the mount options after the package's defaults
	// (long timeouts, explicit data cache control, 1 MiB requests) are set.
	Options func(*gofs.Options)
	// WrapRaw, if set, wraps the raw file system go-fuse builds from Root
	// before it is served, for kinds that answer some requests at the protocol
	// level.
	WrapRaw func(fuse.RawFileSystem) fuse.RawFileSystem
}

// OpenFunc opens req.Source and builds the file system to serve. It runs in
// the helper process; an error is reported to the caller of Mount.
type OpenFunc func(req Request) (*FS, error)

var (
	kindsMu sync.RWMutex
	kinds   = map[string]OpenFunc{}
)

// Register makes a file system kind available to helpers of this binary. It
// is meant to be called from init functions; registering a name twice panics.
func Register(kind string, open OpenFunc) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[kind]; dup {
		panic("fusefs: kind registered twice: " + kind)
	}
	kinds[kind] = open
}

func lookupKind(kind string) (OpenFunc, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	f, ok := kinds[kind]
	return f, ok
}
