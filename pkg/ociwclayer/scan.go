package ociwclayer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/tarstream"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// ScanTar decodes an OCI Windows layer tar and calls fn for every entry with its Windows
// metadata, writing nothing. Alternate data streams are listed in Entry.Streams (name
// and size) of their file; whiteouts come as entries with Removed set; hard links have
// LinkTarget set. Names are checked as an import would check them. File data is skipped.
func ScanTar(ctx context.Context, r io.Reader, fn func(*winlayer.Entry) error) error {
	tr := tarstream.NewReader(r)
	var pending *winlayer.Entry
	sds := &sdCache{}
	var pendingOff int64
	flush := func() error {
		if pending == nil {
			return nil
		}
		e := pending
		pending = nil
		if err := fn(e); err != nil {
			return &TarError{Entry: e.Name, Offset: pendingOff, Err: err}
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return flush()
		}
		start := tr.Offset()
		if err != nil {
			err = tarstream.Cause(err)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = ErrTruncated
			}
			name := ""
			if pending != nil {
				name = pending.Name
			}
			return &TarError{Entry: name, Offset: start, Err: fmt.Errorf("reading the next header: %w", err)}
		}
		terr := func(err error) error { return &TarError{Entry: hdr.Name, Offset: start, Err: err} }
		name := strings.TrimSuffix(strings.ReplaceAll(hdr.Name, `\`, "/"), "/")
		base := path.Base(name)
		if i := strings.IndexByte(base, ':'); i >= 0 && !strings.HasPrefix(base, whiteoutPrefix) && hdr.Typeflag != tar.TypeLink {
			file := name[:len(name)-len(base)+i]
			if pending == nil || pending.Name != file {
				return terr(fmt.Errorf("%w: %s is not the entry before it", ErrOrphanStream, file))
			}
			pending.Streams = append(pending.Streams, winlayer.Stream{Name: base[i:], Size: hdr.Size})
			if _, err := io.Copy(io.Discard, tr.Plain()); err != nil {
				return terr(ErrTruncated)
			}
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tr.Plain()); err != nil {
			return terr(ErrTruncated)
		}
		var e *winlayer.Entry
		switch {
		case strings.HasPrefix(base, whiteoutPrefix):
			e = &winlayer.Entry{Name: path.Dir(name) + "/" + strings.TrimPrefix(base, whiteoutPrefix), Removed: true}
		case hdr.Typeflag == tar.TypeLink:
			e, err = entryFromHeader(&tar.Header{Typeflag: tar.TypeReg, ModTime: hdr.ModTime, AccessTime: hdr.AccessTime,
				ChangeTime: hdr.ChangeTime, PAXRecords: hdr.PAXRecords}, name, sds)
			if err != nil {
				return terr(err)
			}
			e.LinkTarget = hdr.Linkname
		default:
			if e, err = entryFromHeader(hdr, name, sds); err != nil {
				return terr(err)
			}
		}
		if _, err := winlayer.CleanName(e.Name); err != nil {
			return terr(err)
		}
		pending, pendingOff = e, start
	}
}
