package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/atomicfile"
)

// content is the store's blobs by digest: an OCI image layout (blobs/sha256/<hex>,
// index.json naming the images, oci-layout), so that any OCI tool can read it, with
// partial downloads kept beside it in ingest/ by digest.
//
// Every blob enters through ingest: written to ingest/sha256-<hex>, checked against
// its digest and size, synced and renamed into blobs/. A blob in blobs/ is therefore
// always complete and verified. ingest files are locked while written, so two pulls
// of the same blob wait for each other instead of writing it twice.
type content struct {
	layout string // the OCI layout directory
	ingest string
	lock   string // flock'd while index.json is read and rewritten
}

const (
	refNameAnnotation = "org.opencontainers.image.ref.name"
	layoutFile        = `{"imageLayoutVersion":"1.0.0"}`
)

func openContent(root string) (*content, error) {
	c := &content{
		layout: filepath.Join(root, "content"),
		ingest: filepath.Join(root, "content-ingest"),
		lock:   filepath.Join(root, "content.lock"),
	}
	for _, d := range []string{filepath.Join(c.layout, "blobs", "sha256"), c.ingest} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(c.layout, "oci-layout")); errors.Is(err, os.ErrNotExist) {
		if err := writeFileAtomic(filepath.Join(c.layout, "oci-layout"), []byte(layoutFile)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(c.layout, "index.json")); errors.Is(err, os.ErrNotExist) {
		if err := c.writeIndex(&v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *content) blobPath(h v1.Hash) string {
	return filepath.Join(c.layout, "blobs", h.Algorithm, h.Hex)
}

// has reports whether the verified blob is present.
func (c *content) has(d v1.Descriptor) bool {
	st, err := os.Stat(c.blobPath(d.Digest))
	return err == nil && st.Mode().IsRegular() && st.Size() == d.Size
}

func (c *content) open(h v1.Hash) (*os.File, error) {
	f, err := os.Open(c.blobPath(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	return f, err
}

func (c *content) readBlob(h v1.Hash) ([]byte, error) {
	f, err := c.open(h)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// opener opens a blob's content from offset on. It returns the offset the stream
// really starts at: a source that cannot seek returns 0 and the whole blob.
type opener func(ctx context.Context, offset int64) (io.ReadCloser, int64, error)

func bytesOpener(b []byte) opener {
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		return io.NopCloser(bytes.NewReader(b)), 0, nil
	}
}

// put ingests the blob described by d from open, resuming a partial download left
// by an earlier attempt. progress, if not nil, is told the bytes present so far
// (once, the resumed prefix) and each chunk written.
func (c *content) put(ctx context.Context, d v1.Descriptor, open opener, progress func(int64)) error {
	if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 {
		return fmt.Errorf("digest %s: %w: only sha256 digests are handled", d.Digest, ErrUnsupported)
	}
	if d.Size < 0 {
		return fmt.Errorf("blob %s: size %d: %w", d.Digest, d.Size, ErrInvalid)
	}
	if c.has(d) {
		if progress != nil {
			progress(d.Size)
		}
		return nil
	}
	partial := filepath.Join(c.ingest, d.Digest.Algorithm+"-"+d.Digest.Hex)
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", partial, err)
	}
	if c.has(d) { // another process finished it while we waited
		os.Remove(partial)
		return nil
	}
	// Hash what an earlier attempt left, and go on from there.
	h := sha256.New()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	off := st.Size()
	if off > d.Size {
		off = 0
	}
	if off > 0 {
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, off)); err != nil {
			return err
		}
	}
	rc, start, err := open(ctx, off)
	if err != nil {
		return err
	}
	defer rc.Close()
	if start != off {
		off, h = 0, sha256.New()
	}
	if err := f.Truncate(off); err != nil {
		return err
	}
	if progress != nil && off > 0 {
		progress(off)
	}
	w := &hashWriter{w: f, off: off, h: h, progress: progress}
	// One byte more than the descriptor says, to notice a blob that is too long.
	n, err := copyContext(ctx, w, io.LimitReader(rc, d.Size-off+1))
	if err != nil {
		// Keep what was written: the next attempt resumes from there.
		return err
	}
	if got := off + n; got != d.Size {
		os.Remove(partial)
		if got < d.Size {
			return fmt.Errorf("blob %s: %w: %d bytes, want %d", d.Digest, io.ErrUnexpectedEOF, got, d.Size)
		}
		return fmt.Errorf("blob %s: %w: more than the %d bytes its descriptor gives", d.Digest, ErrDigestMismatch, d.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != d.Digest.Hex {
		os.Remove(partial)
		return fmt.Errorf("blob %s: %w: content hashes to sha256:%s", d.Digest, ErrDigestMismatch, sum)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// The directory is synced once, by setRef, before a name can refer to the
	// blob: a rename lost in a crash only means fetching the blob again.
	return os.Rename(partial, c.blobPath(d.Digest))
}

type hashWriter struct {
	w        io.WriterAt
	off      int64
	h        hash.Hash
	progress func(int64)
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.w.WriteAt(p, w.off)
	w.h.Write(p[:n])
	w.off += int64(n)
	if w.progress != nil {
		w.progress(int64(n))
	}
	return n, err
}

// copyContext copies with a 1 MiB buffer, checking ctx between reads.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := r.Read(buf)
		if m > 0 {
			k, werr := w.Write(buf[:m])
			n += int64(k)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// index reads index.json.
func (c *content) index() (*v1.IndexManifest, error) {
	b, err := os.ReadFile(filepath.Join(c.layout, "index.json"))
	if err != nil {
		return nil, err
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(c.layout, "index.json"), err)
	}
	return &im, nil
}

func (c *content) writeIndex(im *v1.IndexManifest) error {
	if im.Manifests == nil {
		im.Manifests = []v1.Descriptor{}
	}
	b, err := json.Marshal(im)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.layout, "index.json"), b)
}

// update changes index.json under the store's lock: fn edits the manifest list.
func (c *content) update(fn func(im *v1.IndexManifest) error) error {
	unlock, err := flockPath(c.lock)
	if err != nil {
		return err
	}
	defer unlock()
	im, err := c.index()
	if err != nil {
		return err
	}
	if err := fn(im); err != nil {
		return err
	}
	return c.writeIndex(im)
}

// setRef names d in index.json, replacing what had the name before.
func (c *content) setRef(name string, d v1.Descriptor) error {
	// Blobs are renamed into place without syncing their directory (see put);
	// it is synced here, before index.json names them.
	if err := syncDir(filepath.Join(c.layout, "blobs", "sha256")); err != nil {
		return err
	}
	return c.update(func(im *v1.IndexManifest) error {
		im.Manifests = slices.DeleteFunc(im.Manifests, func(e v1.Descriptor) bool { return e.Annotations[refNameAnnotation] == name })
		d.Annotations = map[string]string{refNameAnnotation: name}
		im.Manifests = append(im.Manifests, d)
		slices.SortFunc(im.Manifests, func(a, b v1.Descriptor) int {
			return compareStrings(a.Annotations[refNameAnnotation], b.Annotations[refNameAnnotation])
		})
		return nil
	})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func flockPath(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic writes path through a synced temporary sibling renamed into place.
func writeFileAtomic(path string, b []byte) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := path + ".tmp-" + hex.EncodeToString(rnd[:])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
