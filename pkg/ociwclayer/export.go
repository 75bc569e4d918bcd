package ociwclayer

import (
	"archive/tar"
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
	tw := tar.NewWriter(w)
	buf := make([]byte, copyBufferSize)
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := writeEntry(tw, r, e, buf); err != nil {
			var ee *winlayer.EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &winlayer.EntryError{Layer: path, Entry: e.Name, Op: "export", Err: err}
		}
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, r *winlayer.Reader, e *winlayer.Entry, buf []byte) error {
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
	if hdr.Typeflag == tar.TypeReg && e.Size > 0 {
		n, err := io.CopyBuffer(tw, r, buf)
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("data changed while exporting: read %d of %d bytes", n, e.Size)
		}
	}
	for _, s := range e.Streams {
		if err := writeStream(tw, r, e, hdr, s, buf); err != nil {
			return err
		}
	}
	return nil
}

// writeStream writes an alternate data stream as "<file>:<stream>" right after its file,
// with the file's mode and times and no Windows records, as Windows producers do.
func writeStream(tw *tar.Writer, r *winlayer.Reader, e *winlayer.Entry, fileHdr *tar.Header, s winlayer.Stream, buf []byte) error {
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
	rc, err := r.OpenStream(s)
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.CopyBuffer(tw, io.LimitReader(rc, s.Size), buf)
	if err != nil {
		return err
	}
	if n != s.Size {
		return fmt.Errorf("stream %s: read %d of %d bytes", s.Name, n, s.Size)
	}
	return nil
}
