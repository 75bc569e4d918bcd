package ociwclayer

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/pkg/tarstream"
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
	return EncodeTar(ctx, w, path, r)
}

// EntryReader is a source of layer entries in export order, as a winlayer.Reader
// gives them: Next returns each entry, and the data methods read the current one.
type EntryReader interface {
	Next() (*winlayer.Entry, error)
	// ReadDataInto reads the whole unnamed data stream of the current entry into p,
	// whose length is the entry's size.
	ReadDataInto(p []byte) error
	// OpenData opens the unnamed data stream of the current entry.
	OpenData() (io.ReadCloser, error)
	// OpenStream opens one of the current entry's alternate data streams.
	OpenStream(s winlayer.Stream) (io.ReadCloser, error)
}

// EncodeTar writes the entries of r to w as an OCI Windows layer tar, exactly as
// ExportLayerToTar writes a layer folder; layer names the source in errors.
//
// When w is an *os.File (a file, or a pipe such as standard output), the data
// of large files goes into it by the kernel (copy_file_range or sendfile, see
// tarstream.Writer) rather than through this process; small files are read
// straight into the tar's buffer.
func EncodeTar(ctx context.Context, w io.Writer, layer string, r EntryReader) error {
	tw := tarstream.NewWriter(w)
	enc := &encoder{r: r, tw: tw, hdr: tar.Header{PAXRecords: map[string]string{}}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if e.ParentLink != "" && e.LinkTarget == "" {
			// A hard link to a parent layer's file stays a link: the tar names the
			// parent's file, as the tar it was imported from did.
			c := *e
			c.LinkTarget, c.Streams = e.ParentLink, nil
			e = &c
		}
		it := &exportItem{e: e}
		err = readEntry(r, it)
		if err == nil {
			err = enc.writeEntry(it)
		}
		it.close()
		if err != nil {
			var ee *winlayer.EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &winlayer.EntryError{Layer: layer, Entry: e.Name, Op: "export", Err: err}
		}
	}
	return tw.Close()
}

// encoder holds what writing one entry after another reuses.
type encoder struct {
	r   EntryReader
	tw  *tarstream.Writer
	hdr tar.Header // reused: the tar writer keeps nothing of a header
}

// Files up to smallFileSize are read whole, in a few system calls, straight into
// the tar writer's buffer; larger ones are opened and copied by the kernel where the
// output allows it.
//
// Measured on this project's benchmark machines, reading ahead in a second goroutine
// was slower than this simple loop: the hand-offs and the larger working set cost more
// than the overlap saved.
const smallFileSize = tarstream.KernelCopyMin

// exportItem is an entry with its contents opened.
type exportItem struct {
	e       *winlayer.Entry
	small   bool            // the data is read in place with ReadDataInto
	file    io.ReadCloser   // the data of a large file
	streams []io.ReadCloser // alternate data streams, in e.Streams order
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

// readEntry opens a large file's data and the alternate data streams; a small
// file's data is read when it is written.
func readEntry(r EntryReader, it *exportItem) error {
	e := it.e
	if hasTarData(e) {
		if e.Size < smallFileSize {
			it.small = true
		} else {
			rc, err := r.OpenData()
			if err != nil {
				return err
			}
			it.file = rc
		}
	}
	if e.LinkTarget != "" {
		return nil // the link's file and streams are written under its first name
	}
	for _, s := range e.Streams {
		rc, err := r.OpenStream(s)
		if err != nil {
			return err
		}
		it.streams = append(it.streams, rc)
	}
	return nil
}

// header returns the reused header, reset.
func (enc *encoder) header() *tar.Header {
	recs := enc.hdr.PAXRecords
	clear(recs)
	enc.hdr = tar.Header{PAXRecords: recs, Format: tar.FormatPAX}
	return &enc.hdr
}

func (enc *encoder) writeEntry(it *exportItem) error {
	e, tw := it.e, enc.tw
	if e.Removed {
		hdr := enc.header()
		hdr.Name = path.Dir(e.Name) + "/" + whiteoutPrefix + path.Base(e.Name)
		hdr.Typeflag = tar.TypeReg
		hdr.ModTime = time.Unix(0, 0)
		return tw.WriteHeader(hdr)
	}
	hdr := enc.header()
	hdr.Name = e.Name
	hdr.ModTime = e.Info.LastWriteTime.Time()
	hdr.AccessTime = e.Info.LastAccessTime.Time()
	hdr.ChangeTime = e.Info.ChangeTime.Time()
	hdr.PAXRecords[paxFileAttr] = strconv.FormatUint(uint64(e.Info.FileAttributes), 10)
	hdr.PAXRecords[paxCreationTime] = formatPAXTime(e.Info.CreationTime.Time())
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
	case it.small:
		if err := tw.WriteInPlace(int(e.Size), enc.r.ReadDataInto); err != nil {
			return fmt.Errorf("data changed while exporting: %w", err)
		}
	case it.file != nil:
		if err := copyData(tw, it.file, e.Size); err != nil {
			return fmt.Errorf("data changed while exporting: %w", err)
		}
	}
	mode, mt, at, ct := hdr.Mode, hdr.ModTime, hdr.AccessTime, hdr.ChangeTime
	for i, s := range e.Streams {
		if err := enc.writeStream(it.streams[i], e, mode, mt, at, ct, s); err != nil {
			return err
		}
	}
	return nil
}

// copyData writes size bytes of rc as the current entry's data: by the kernel
// when rc is a file.
func copyData(tw *tarstream.Writer, rc io.Reader, size int64) error {
	var n int64
	var err error
	if f, ok := rc.(*os.File); ok {
		n, err = tw.WriteFile(f, 0, size)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil // said below
		}
	} else {
		n, err = io.Copy(tw, io.LimitReader(rc, size))
	}
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("read %d of %d bytes", n, size)
	}
	return nil
}

// writeStream writes an alternate data stream as "<file>:<stream>" right after its file,
// with the file's mode and times and no Windows records, as Windows producers do.
func (enc *encoder) writeStream(rc io.Reader, e *winlayer.Entry, mode int64, mt, at, ct time.Time, s winlayer.Stream) error {
	sname := strings.TrimPrefix(s.Name, ":")
	sname = strings.TrimSuffix(sname, ":$DATA")
	hdr := enc.header()
	hdr.Name = e.Name + ":" + sname
	hdr.Typeflag = tar.TypeReg
	hdr.Mode = mode
	hdr.Size = s.Size
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mt, at, ct
	if err := enc.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if err := copyData(enc.tw, rc, s.Size); err != nil {
		return fmt.Errorf("stream %s: %w", s.Name, err)
	}
	return nil
}
