package ociwclayer

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostcompute/hostcompute/internal/bufpool"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// Mode bits written for Windows entries: the file-type bits only, as Windows producers
// write them; there are no POSIX permissions.
const (
	modeRegular   = 0o100000
	modeDirectory = 0o40000
	modeReparse   = 0o120000
	modeHardLink  = 0o644
)

// ExportLayerToTar writes the layer folder at path to w as an OCI Windows layer tar.
// parentLayerPaths is accepted for compatibility with hcsshim's signature: a folder-form
// layer holds all of its content, so parents are not read.
//
// The output is deterministic: Files/, Hives/ and UtilityVM/ in that order, each
// directory before its children in byte-wise name order, whiteouts right after their
// directory, alternate data streams right after their file.
func ExportLayerToTar(ctx context.Context, w io.Writer, path string, parentLayerPaths []string) error {
	r, err := winlayer.NewReader(ctx, path)
	if err != nil {
		return err
	}
	defer r.Close()
	// A second goroutine walks the layer and reads small files ahead while this one
	// encodes and writes; on two cores that hides most of the file system work. Entries
	// travel in batches, their small contents packed in a few reused chunks, so the two
	// goroutines rarely wait for each other.
	batches := make(chan *exportBatch, 2)
	done := make(chan struct{})
	chunks := bufpool.New(chunksInFlight, chunkSize)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prefetch(r, batches, done, chunks)
	}()
	err = writeBatches(ctx, w, path, batches, chunks)
	close(done)
	for b := range batches { // release what the prefetcher read ahead
		b.close(chunks)
	}
	wg.Wait()
	return err
}

// Read-ahead bounds: files up to prefetchSmall bytes are read into chunks of chunkSize;
// a batch holds at most batchEntries entries and one chunk; at most chunksInFlight
// chunks exist.
const (
	prefetchSmall  = 1 << 20
	chunkSize      = 4 << 20
	chunksInFlight = 4
	batchEntries   = 256
)

// exportItem is an entry with its contents read or opened ahead.
type exportItem struct {
	e       *winlayer.Entry
	data    []byte          // the data of a small file, in the batch's chunk
	file    io.ReadCloser   // the data of a large file
	streams []io.ReadCloser // alternate data streams, in e.Streams order
	err     error
}

type exportBatch struct {
	items []*exportItem
	chunk []byte // from the chunk pool, or nil
}

func (b *exportBatch) close(chunks *bufpool.Pool) {
	for _, it := range b.items {
		it.close()
	}
	if b.chunk != nil {
		chunks.Put(b.chunk)
		b.chunk = nil
	}
}

func (it *exportItem) close() {
	if it.file != nil {
		it.file.Close()
		it.file = nil
	}
	for _, s := range it.streams {
		s.Close()
	}
	it.streams = nil
}

// hasTarData reports whether an entry is written as a regular tar file with content.
func hasTarData(e *winlayer.Entry) bool {
	if e.Removed || e.LinkTarget != "" || e.IsDir() || e.Size == 0 {
		return false
	}
	if len(e.Reparse) > 0 {
		if rp, err := winfile.DecodeReparsePoint(e.Reparse); err == nil && rp.IsSymlinkOrMountPoint() {
			return false
		}
	}
	return true
}

func prefetch(r *winlayer.Reader, out chan<- *exportBatch, done <-chan struct{}, chunks *bufpool.Pool) {
	defer close(out)
	b := &exportBatch{}
	send := func() bool {
		if len(b.items) == 0 {
			return true
		}
		select {
		case out <- b:
			b = &exportBatch{}
			return true
		case <-done:
			b.close(chunks)
			return false
		}
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			send()
			return
		}
		it := &exportItem{e: e, err: err}
		if err == nil && hasTarData(e) && e.Size <= prefetchSmall {
			if b.chunk != nil && len(b.chunk)+int(e.Size) > cap(b.chunk) {
				if !send() {
					return
				}
			}
			if b.chunk == nil {
				b.chunk = chunks.Get(0)
			}
			n := len(b.chunk)
			b.chunk = b.chunk[:n+int(e.Size)]
			it.data = b.chunk[n:]
			if rerr := r.ReadDataInto(it.data); rerr != nil {
				it.err = fmt.Errorf("data changed while exporting: %w", rerr)
			}
		} else if err == nil {
			it.err = openAhead(r, it)
		}
		if it.err == nil && len(e.Streams) > 0 {
			it.err = openStreams(r, it)
		}
		b.items = append(b.items, it)
		if it.err != nil {
			send()
			return
		}
		if len(b.items) >= batchEntries && !send() {
			return
		}
	}
}

// openAhead opens a large file's data for the writer to copy.
func openAhead(r *winlayer.Reader, it *exportItem) error {
	if !hasTarData(it.e) {
		return nil
	}
	rc, err := r.OpenData()
	if err != nil {
		return err
	}
	it.file = rc
	return nil
}

func openStreams(r *winlayer.Reader, it *exportItem) error {
	for _, s := range it.e.Streams {
		rc, err := r.OpenStream(s)
		if err != nil {
			return err
		}
		it.streams = append(it.streams, rc)
	}
	return nil
}

func writeBatches(ctx context.Context, w io.Writer, path string, batches <-chan *exportBatch, chunks *bufpool.Pool) error {
	// archive/tar writes every header block on its own; gather them.
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	buf := make([]byte, copyBufferSize)
	for b := range batches {
		if err := ctx.Err(); err != nil {
			b.close(chunks)
			return err
		}
		for _, it := range b.items {
			err := it.err
			if err == nil {
				err = writeEntry(tw, it, buf)
			}
			it.close()
			if err != nil {
				b.close(chunks)
				var ee *winlayer.EntryError
				if errors.As(err, &ee) || it.e == nil {
					return err
				}
				return &winlayer.EntryError{Layer: path, Entry: it.e.Name, Op: "export", Err: err}
			}
		}
		b.close(chunks)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func writeEntry(tw *tar.Writer, it *exportItem, buf []byte) error {
	e := it.e
	if e.Removed {
		return tw.WriteHeader(&tar.Header{
			Name:     path.Dir(e.Name) + "/" + whiteoutPrefix + path.Base(e.Name),
			Typeflag: tar.TypeReg,
			ModTime:  time.Unix(0, 0),
			Format:   tar.FormatPAX,
		})
	}
	hdr := &tar.Header{
		Name:       e.Name,
		ModTime:    e.Info.LastWriteTime.Time(),
		AccessTime: e.Info.LastAccessTime.Time(),
		ChangeTime: e.Info.ChangeTime.Time(),
		Format:     tar.FormatPAX,
		PAXRecords: map[string]string{
			paxFileAttr:     strconv.FormatUint(uint64(e.Info.FileAttributes), 10),
			paxCreationTime: formatPAXTime(e.Info.CreationTime.Time()),
		},
	}
	if e.LinkTarget != "" {
		// Later names of a hard-linked file: a tar link with the name's own times and
		// attributes, no security descriptor.
		hdr.Typeflag = tar.TypeLink
		hdr.Linkname = e.LinkTarget
		hdr.Mode = modeHardLink
		return tw.WriteHeader(hdr)
	}
	if e.SecurityDescriptor != nil {
		hdr.PAXRecords[paxRawSD] = base64.StdEncoding.EncodeToString(e.SecurityDescriptor)
	}
	for _, ea := range e.ExtendedAttributes {
		hdr.PAXRecords[paxEAPrefix+ea.Name] = base64.StdEncoding.EncodeToString(ea.Value)
	}
	var link *winfile.ReparsePoint
	if len(e.Reparse) > 0 {
		rp, err := winfile.DecodeReparsePoint(e.Reparse)
		if err != nil {
			return err
		}
		if !rp.IsSymlinkOrMountPoint() {
			return fmt.Errorf("%w: reparse tag %#08x has no tar form (only symbolic links and mount points do)", ErrUnsupportedEntry, rp.Tag)
		}
		link = rp
		hdr.Mode |= modeReparse
	}
	switch {
	case e.IsDir():
		hdr.Mode |= modeDirectory
	case !e.NoDataStream:
		hdr.Mode |= modeRegular
	}
	switch {
	case link != nil:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = link.Target()
		if link.Tag == winfile.ReparseTagMountPoint {
			hdr.PAXRecords[paxMountPoint] = "1"
		}
	case e.IsDir():
		hdr.Typeflag = tar.TypeDir
	default:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = e.Size
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	switch {
	case it.data != nil:
		if _, err := tw.Write(it.data); err != nil {
			return err
		}
	case it.file != nil:
		n, err := io.CopyBuffer(tw, io.LimitReader(it.file, e.Size), buf)
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("data changed while exporting: read %d of %d bytes", n, e.Size)
		}
	}
	for i, s := range e.Streams {
		if err := writeStream(tw, it.streams[i], e, hdr, s, buf); err != nil {
			return err
		}
	}
	return nil
}

// writeStream writes an alternate data stream as "<file>:<stream>" right after its file,
// with the file's mode and times and no Windows records, as Windows producers do.
func writeStream(tw *tar.Writer, rc io.Reader, e *winlayer.Entry, fileHdr *tar.Header, s winlayer.Stream, buf []byte) error {
	sname := strings.TrimPrefix(s.Name, ":")
	sname = strings.TrimSuffix(sname, ":$DATA")
	hdr := &tar.Header{
		Name:       e.Name + ":" + sname,
		Typeflag:   tar.TypeReg,
		Mode:       fileHdr.Mode,
		Size:       s.Size,
		ModTime:    fileHdr.ModTime,
		AccessTime: fileHdr.AccessTime,
		ChangeTime: fileHdr.ChangeTime,
		Format:     tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(tw, io.LimitReader(rc, s.Size), buf)
	if err != nil {
		return err
	}
	if n != s.Size {
		return fmt.Errorf("stream %s: read %d of %d bytes", s.Name, n, s.Size)
	}
	return nil
}
