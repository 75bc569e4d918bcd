package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layers is where an image's layers are unpacked: the engine's layer store, with
// layers keyed by chainID. An image's layer i is the key chainID(0..i) over the key
// chainID(0..i-1), so images that share a base share its layers.
type Layers interface {
	// HasLayer reports whether a committed layer with key exists.
	HasLayer(ctx context.Context, key string) (bool, error)
	// ImportLayer unpacks the uncompressed layer tar r as the committed layer key
	// over parent ("" for a base layer). osName is the image's OS: "windows"
	// layers are Windows layer tars, any other an OCI Linux layer. diffID is the
	// digest r must have. Nothing is visible under key unless it returns nil.
	ImportLayer(ctx context.Context, key, parent, osName, diffID string, r io.Reader) error
	// ExportLayer writes the layer key as a layer tar (the Windows form for
	// Windows layers).
	ExportLayer(ctx context.Context, key string, w io.Writer) error
	// RemoveLayer removes the layer key; one with children is refused.
	RemoveLayer(ctx context.Context, key string) error
}

// diffIDChecker is the optional ability of a Layers store to check the diffID
// itself in ImportLayer, failing with an error matching ErrDigestMismatch before
// anything is visible; the puller then does not hash the layer a second time.
type diffIDChecker interface{ ChecksDiffID() bool }

// ChainIDs returns the chain IDs of diffIDs (OCI image-spec): the first is the
// first diffID, each next one the digest of "<previous chainID> <diffID>".
func ChainIDs(diffIDs []v1.Hash) []v1.Hash {
	out := make([]v1.Hash, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out[i] = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	}
	return out
}

// verifyReader hashes what it reads and, at the end of the stream, fails instead
// of returning io.EOF when the content does not hash to want.
type verifyReader struct {
	r    io.Reader
	h    hash.Hash
	want v1.Hash
	n    int64
	done bool
}

func newVerifyReader(r io.Reader, want v1.Hash) *verifyReader {
	return &verifyReader{r: r, h: sha256.New(), want: want}
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		v.done = true
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			return n, fmt.Errorf("uncompressed layer: %w: hashes to sha256:%s, the config's diffID is %s", ErrDigestMismatch, got, v.want)
		}
	}
	return n, err
}

// drain reads what the consumer left (tar padding after the end marker) so that
// the digest is checked.
func (v *verifyReader) drain() error {
	if v.done {
		return nil
	}
	_, err := io.Copy(io.Discard, v)
	return err
}

func shortDigest(s string) string {
	_, hexs, _ := strings.Cut(s, ":")
	if len(hexs) > 12 {
		return hexs[:12]
	}
	return hexs
}
