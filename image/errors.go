package image

import (
	"errors"
	"fmt"
	"io/fs"
)

// Errors of this package, found with errors.Is. Most arrive inside an *Error that
// names the image and the blob.
var (
	// Bad or hostile input from a registry, a layout or an archive.

	// ErrDigestMismatch: a blob's bytes do not hash to the digest that names them
	// (or an uncompressed layer to its diffID), or its size differs from its
	// descriptor's.
	ErrDigestMismatch = errors.New("image: digest mismatch")
	// ErrInvalid: a manifest, index or config that cannot be used as written: bad
	// JSON, a config whose diffIDs do not match the layers, an unknown media type.
	ErrInvalid = errors.New("image: invalid image")

	// What is asked for is not there.

	// ErrNotFound: no image of that name in the store, no blob of that digest
	// at the source. Matches fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("image: not found: %w", fs.ErrNotExist)
	// ErrNoPlatform: an index holds no image for the requested platform.
	ErrNoPlatform = fmt.Errorf("image: no image for the platform: %w", fs.ErrNotExist)
	// ErrExists: the name is already used (tag without replacing). Matches
	// fs.ErrExist.
	ErrExists = fmt.Errorf("image: already exists: %w", fs.ErrExist)

	// What this package does not do.

	// ErrForeignLayer: a non-distributable layer whose content lives at other
	// URLs, and fetching from them was not asked for (WithForeignLayers).
	ErrForeignLayer = errors.New("image: non-distributable (foreign) layer not fetched; allow foreign layers to fetch it from its URLs")
	// ErrUnsupported: a media type, compression or operating system this package
	// cannot handle. Matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("image: unsupported: %w", errors.ErrUnsupported)
)

// Error is a failure tied to an image and, where there is one, one of its blobs.
// The cause (Err) names the tar entry and offset when a layer's content is at fault.
type Error struct {
	Image  string // the reference as given
	Op     string // "fetch", "verify", "unpack", "push", ...
	Digest string // the blob or layer digest; empty when the failure is the image's
	Err    error
}

func (e *Error) Error() string {
	if e.Digest == "" {
		return fmt.Sprintf("image %s: %s: %v", e.Image, e.Op, e.Err)
	}
	return fmt.Sprintf("image %s: %s %s: %v", e.Image, e.Op, e.Digest, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
