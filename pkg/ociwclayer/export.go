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
	"time"

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
func EncodeTar(ctx context.Context, w io.Writer, layer string, r EntryReader) error {
	// archive/tar writes every header block on its own; gather them.
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	buf := make([]byte, copyBufferSize)
	small := make([]byte, smallFileSize)
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
		err = readEntry(r, it, small)
		if err == nil {
			err = writeEntry(tw, it, buf)
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
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// Files up to smallFileSize are read whole, in a few system calls, into one reused
// buffer; larger ones are copied through.
//
// Measured on this project's benchmark machines, reading ahead in a second goroutine
// was slower than this simple loop: the hand-offs and the larger working set cost more
// than the overlap saved.
const smallFileSize = 1 << 20

// exportItem is an entry with its contents read or opened.
type exportItem struct {
	e       *winlayer.Entry
	data    []byte          // the data of a small file
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

// readEntry reads a small file's data into small, or opens a large file's data, and
// opens the alternate data streams.
func readEntry(r EntryReader, it *exportItem, small []byte) error {
	e := it.e
	if hasTarData(e) {
		if e.Size <= int64(len(small)) {
			it.data = small[:e.Size]
			if err := r.ReadDataInto(it.data); err != nil {
				return fmt.Errorf("data changed while exporting: %w", err)
			}
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
