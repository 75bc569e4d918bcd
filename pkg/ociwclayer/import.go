// Package ociwclayer converts between OCI Windows layer tars and layer folders.
//
// # Tar form
//
// An OCI Windows layer tar holds Files/, Hives/ and UtilityVM/Files/ entries in PAX
// format. Windows metadata travels in PAX records: MSWINDOWS.fileattr (attributes),
// MSWINDOWS.rawsd (base64 security descriptor), MSWINDOWS.xattr.<name> (base64 EA
// value), MSWINDOWS.mountpoint (junction), LIBARCHIVE.creationtime, and the standard
// atime/ctime/mtime. Alternate data streams are separate entries named "<file>:<stream>"
// right after their file; deletions are ".wh.<name>" entries; hard links are tar links.
//
// # Folder form
//
// Layers are written with package winlayer: real files under Files/ with every piece of
// Windows metadata kept beside them, so that ExportLayerToTar gives back the entries,
// contents and metadata that ImportLayerFromTar read. Export is deterministic: the same
// layer always gives the same bytes, hence the same digest.
//
// # Errors
//
// Failures tied to a tar entry are *TarError values naming the entry and the byte offset
// of its header; the cause underneath is a winlayer error (bad names, escapes, case
// collisions) or one of this package's sentinels.
package ociwclayer

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/pkg/tarstream"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// PAX record keys of the Windows layer tar format.
const (
	paxFileAttr      = "MSWINDOWS.fileattr"
	paxRawSD         = "MSWINDOWS.rawsd"
	paxSDDL          = "MSWINDOWS.sd"
	paxMountPoint    = "MSWINDOWS.mountpoint"
	paxEAPrefix      = "MSWINDOWS.xattr."
	paxCreationTime  = "LIBARCHIVE.creationtime"
	whiteoutPrefix   = ".wh."
	whiteoutOpaque   = ".wh..wh..opq"
	copyBufferSize   = 1 << 20
	maxStreamNameLen = 255
)

// Errors of the tar form, wrapped in *TarError.
var (
	// ErrBadPAX: a Windows PAX record has a malformed value.
	ErrBadPAX = errors.New("ociwclayer: malformed PAX record")
	// ErrOrphanStream: an alternate data stream entry does not follow its file.
	ErrOrphanStream = errors.New("ociwclayer: alternate data stream without its file")
	// ErrUnsupportedEntry: a tar entry type or feature with no Windows equivalent.
	ErrUnsupportedEntry = errors.New("ociwclayer: unsupported entry")
	// ErrTruncated: the tar ends in the middle of an entry. Matches io.ErrUnexpectedEOF.
	ErrTruncated = fmt.Errorf("ociwclayer: truncated tar: %w", io.ErrUnexpectedEOF)
)

// TarError describes a failure tied to one tar entry.
type TarError struct {
	Entry  string // entry name as found in the tar ("" before the first entry)
	Offset int64  // byte offset of the entry's header in the uncompressed tar
	Err    error
}

func (e *TarError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("tar at byte %d: %v", e.Offset, e.Err)
	}
	return fmt.Sprintf("tar entry %s (header at byte %d): %v", e.Entry, e.Offset, e.Err)
}

func (e *TarError) Unwrap() error { return e.Err }

// ImportLayerFromTar reads an OCI Windows layer tar from r and writes it as a new layer
// folder at path. parentLayerPaths are the layer's parents, immediate parent first and
// base layer last; a base layer has none. It returns the sum of the sizes of the files'
// main data (alternate streams not counted), as hcsshim does.
//
// Nothing is visible at path until the whole tar has been read and checked: on any
// error the staged layer is removed and path is left as it was.
func ImportLayerFromTar(ctx context.Context, r io.Reader, path string, parentLayerPaths []string, opts ...winlayer.Option) (int64, error) {
	w, err := winlayer.NewWriter(ctx, path, parentLayerPaths, opts...)
	if err != nil {
		return 0, err
	}
	size, err := writeLayerFromTar(ctx, r, w)
	if err != nil {
		w.Abort()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return size, nil
}

// EntryWriter receives a layer's entries as DecodeTar decodes them; a
// winlayer.Writer is one. Add starts an entry whose data (e.Size bytes) follows
// through Write; AddStream starts an alternate data stream of the entry added last,
// named ":name" or ":name:$DATA", whose data follows through Write.
type EntryWriter interface {
	Add(e *winlayer.Entry) error
	AddStream(name string, size int64, attributes uint32) error
	AddLink(name, target string) error
	Remove(name string) error
	Write(p []byte) (int, error)
}

// DecodeTar reads an OCI Windows layer tar from r and passes its entries, with
// their data streamed, to w in tar order, as ImportLayerFromTar does into a layer
// folder. It returns the sum of the sizes of the files' main data. Errors tied to
// an entry are *TarError values.
func DecodeTar(ctx context.Context, r io.Reader, w EntryWriter) (int64, error) {
	return writeLayerFromTar(ctx, r, w)
}

func writeLayerFromTar(ctx context.Context, r io.Reader, w EntryWriter) (int64, error) {
	// The project's own header codec (entries and errors as archive/tar's,
	// differentially fuzzed), which knows each header's offset.
	tr := tarstream.NewReader(r)
	buf := make([]byte, copyBufferSize)
	var total int64
	current := "" // the last regular file or directory added, for alternate streams
	sds := &sdCache{}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			err = tarstream.Cause(err)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = ErrTruncated
			}
			return 0, &TarError{Entry: current, Offset: tr.Offset(), Err: fmt.Errorf("reading the next header: %w", err)}
		}
		start := tr.Offset()
		terr := func(err error) error { return &TarError{Entry: hdr.Name, Offset: start, Err: err} }
		data := tr.Plain() // errors without entry and offset: terr adds them
		name := strings.TrimSuffix(strings.ReplaceAll(hdr.Name, `\`, "/"), "/")
		base := path.Base(name)
		dir := path.Dir(name)

		switch {
		case strings.HasPrefix(base, whiteoutPrefix):
			if base == whiteoutOpaque {
				return 0, terr(fmt.Errorf("%w: opaque directory marker; Windows layers have no opaque directories", ErrUnsupportedEntry))
			}
			current = ""
			if err := w.Remove(dir + "/" + strings.TrimPrefix(base, whiteoutPrefix)); err != nil {
				return 0, terr(err)
			}
			continue

		case hdr.Typeflag == tar.TypeLink:
			current = ""
			if err := w.AddLink(name, strings.TrimSuffix(hdr.Linkname, "/")); err != nil {
				return 0, terr(err)
			}
			continue

		case strings.Contains(base, ":"):
			// An alternate data stream: "<file>:<stream>" or "<file>:<stream>:$DATA".
			i := strings.IndexByte(base, ':')
			file := name[:len(name)-len(base)+i]
			if current == "" || file != current {
				return 0, terr(fmt.Errorf("%w: %s is not the entry before it", ErrOrphanStream, file))
			}
			if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
				return 0, terr(fmt.Errorf("%w: alternate data stream of type %q", ErrUnsupportedEntry, hdr.Typeflag))
			}
			if err := w.AddStream(base[i:], hdr.Size, 0); err != nil {
				return 0, terr(err)
			}
			if err := copyBody(w, data, buf); err != nil {
				return 0, terr(err)
			}
			continue
		}

		e, err := entryFromHeader(hdr, name, sds)
		if err != nil {
			return 0, terr(err)
		}
		if err := w.Add(e); err != nil {
			return 0, terr(err)
		}
		current = name
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
			if err := copyBody(w, data, buf); err != nil {
				return 0, terr(err)
			}
			total += hdr.Size
		}
	}
}

func copyBody(w io.Writer, tr io.Reader, buf []byte) error {
	_, err := io.CopyBuffer(w, tr, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// entryFromHeader decodes the Windows metadata of a file, directory or symlink entry.
func entryFromHeader(hdr *tar.Header, name string, sds *sdCache) (*winlayer.Entry, error) {
	e := &winlayer.Entry{Name: name}
	pax := hdr.PAXRecords
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		e.Size = hdr.Size
		// A Windows file backed up without a DATA stream is exported with no mode bits.
		e.NoDataStream = hdr.Size == 0 && hdr.Mode&0o170000 == 0 && hasWindowsRecords(pax)
	case tar.TypeDir:
		e.Info.FileAttributes = winfile.AttrDirectory
	case tar.TypeSymlink:
	default:
		return nil, fmt.Errorf("%w: tar type %q has no Windows equivalent", ErrUnsupportedEntry, hdr.Typeflag)
	}
	if v, ok := pax[paxFileAttr]; ok {
		a, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q: %v", ErrBadPAX, paxFileAttr, v, err)
		}
		e.Info.FileAttributes = uint32(a)
		if hdr.Typeflag == tar.TypeDir {
			e.Info.FileAttributes |= winfile.AttrDirectory
		}
	}
	// Times: a missing atime, ctime or creation time falls back to mtime (hcsshim would
	// produce a meaningless 1754 date from Go's zero time).
	mtime := hdr.ModTime
	e.Info.LastWriteTime = winfile.NewFiletime(mtime)
	e.Info.LastAccessTime = e.Info.LastWriteTime
	e.Info.ChangeTime = e.Info.LastWriteTime
	e.Info.CreationTime = e.Info.LastWriteTime
	if !hdr.AccessTime.IsZero() {
		e.Info.LastAccessTime = winfile.NewFiletime(hdr.AccessTime)
	}
	if !hdr.ChangeTime.IsZero() {
		e.Info.ChangeTime = winfile.NewFiletime(hdr.ChangeTime)
	}
	if v, ok := pax[paxCreationTime]; ok {
		t, err := parsePAXTime(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q: %v", ErrBadPAX, paxCreationTime, v, err)
		}
		e.Info.CreationTime = winfile.NewFiletime(t)
	}
	if v, ok := pax[paxRawSD]; ok {
		sd, err := sds.decode(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadPAX, paxRawSD, err)
		}
		e.SecurityDescriptor = sd
	} else if v, ok := pax[paxSDDL]; ok && v != "" {
		return nil, fmt.Errorf("%w: %s (an SDDL string) without %s; converting SDDL to binary is not supported", ErrUnsupportedEntry, paxSDDL, paxRawSD)
	}
	// EAs in key order, so the same tar always gives the same layer.
	var eaKeys []string
	for k := range pax {
		if strings.HasPrefix(k, paxEAPrefix) {
			eaKeys = append(eaKeys, k)
		}
	}
	slices.Sort(eaKeys)
	for _, k := range eaKeys {
		v, err := base64.StdEncoding.DecodeString(pax[k])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadPAX, k, err)
		}
		e.ExtendedAttributes = append(e.ExtendedAttributes, winfile.ExtendedAttribute{Name: k[len(paxEAPrefix):], Value: v})
	}
	if len(e.ExtendedAttributes) > 0 {
		if _, err := winfile.EncodeExtendedAttributes(e.ExtendedAttributes); err != nil {
			return nil, fmt.Errorf("%w: extended attributes: %v", ErrBadPAX, err)
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		_, mp := pax[paxMountPoint]
		target := strings.ReplaceAll(hdr.Linkname, "/", `\`)
		rp, err := winfile.NewLinkReparsePoint(target, mp).Encode()
		if err != nil {
			return nil, fmt.Errorf("%w: link target %q: %v", ErrUnsupportedEntry, hdr.Linkname, err)
		}
		e.Reparse = rp
		e.Info.FileAttributes |= winfile.AttrReparsePoint
	}
	return e, nil
}

func hasWindowsRecords(pax map[string]string) bool {
	_, ok := pax[paxFileAttr]
	return ok
}

// parsePAXTime parses "<seconds>[.<fraction>]" with an optional minus sign.
func parsePAXTime(s string) (time.Time, error) {
	secStr, fracStr, hasFrac := strings.Cut(s, ".")
	neg := strings.HasPrefix(secStr, "-")
	secs, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	if !hasFrac {
		return time.Unix(secs, 0), nil
	}
	if fracStr == "" || strings.Trim(fracStr, "0123456789") != "" {
		return time.Time{}, fmt.Errorf("bad fraction %q", fracStr)
	}
	if len(fracStr) > 9 {
		fracStr = fracStr[:9]
	}
	fracStr += strings.Repeat("0", 9-len(fracStr))
	nsecs, _ := strconv.ParseInt(fracStr, 10, 64)
	if neg {
		return time.Unix(secs, -nsecs), nil
	}
	return time.Unix(secs, nsecs), nil
}

// formatPAXTime writes "<seconds>[.<fraction>]" with trailing zeros of the fraction
// dropped, the form archive/tar uses for atime, ctime and mtime.
func formatPAXTime(t time.Time) string {
	secs, nsecs := t.Unix(), t.Nanosecond()
	if nsecs == 0 {
		return strconv.FormatInt(secs, 10)
	}
	sign := ""
	if secs < 0 {
		sign = "-"
		secs = -(secs + 1)
		nsecs = 1e9 - nsecs
	}
	return strings.TrimRight(fmt.Sprintf("%s%d.%09d", sign, secs, nsecs), "0")
}

// sdCache remembers decoded and validated security descriptors by their base64 form:
// a layer's files share a few hundred descriptors. A nil cache decodes every time.
type sdCache struct{ m map[string][]byte }

const maxCachedSDs = 4096

func (c *sdCache) decode(v string) ([]byte, error) {
	if c != nil {
		if sd, ok := c.m[v]; ok {
			return sd, nil
		}
	}
	sd, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, err
	}
	if err := winfile.ValidateSecurityDescriptor(sd); err != nil {
		return nil, err
	}
	if c != nil && len(c.m) < maxCachedSDs {
		if c.m == nil {
			c.m = map[string][]byte{}
		}
		c.m[v] = sd
	}
	return sd, nil
}
