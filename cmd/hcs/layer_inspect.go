package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// Entry types shown by inspect.
const (
	typeFile     = "file"
	typeDir      = "dir"
	typeSymlink  = "symlink"
	typeJunction = "junction"
	typeLink     = "link" // hard link
	typeWhiteout = "whiteout"
	typeReparse  = "reparse" // any other reparse point
)

// inspectEntry is the JSON form of one entry: the shared Entry, plus why a
// security descriptor could not be shown as SDDL.
type inspectEntry struct {
	Entry
	SDError string `json:"securityDescriptorError,omitempty"`
}

func (a *app) newLayerInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect [flags] TAR|LAYERDIR|-",
		Short: "List the entries of a layer tar or layer folder with their Windows metadata",
		Long: `List every entry of an OCI Windows layer tar (a file, or - for standard input;
plain, gzip or zstd) or of a layer folder, with its Windows metadata. A tar is
decoded and checked as an import would check it, but nothing is written.

Entry types: file, dir, symlink, junction (mount point), link (hard link, the
target being the first name of the file), whiteout (a name this layer deletes from
its parents), reparse (any other reparse point).

The text form is a table with the name last, followed by "-> TARGET" for links,
symbolic links and junctions. Security descriptors are shortened there, and
control characters in names are shown as "?". Columns are aligned in blocks of
4096 rows.

With -o json the output is one document, {"entries": [...]}, written entry by
entry; each entry holds type, name, size, attributes (names and the number
fileAttributes), created, modified, accessed and changed times (RFC 3339, UTC),
securityDescriptor (SDDL), extendedAttributes (name, size, flags, base64 value),
streams (name, size), target and reparseTag when they apply. If inspect fails
midway, the document is left unterminated.

A reader that closes standard output early, such as head, ends the listing with
exit code 0.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.inspect(cmd.Context(), args[0])
		}),
	}
}

// inspect lists the entries of path. A reader that stops early ("hcs layer inspect
// L | head") is not a failure: the listing ends quietly with success.
func (a *app) inspect(ctx context.Context, path string) error {
	err := a.list(ctx, path)
	if errors.Is(err, syscall.EPIPE) {
		a.log.Debug("standard output closed by its reader", logKeyError, err)
		return nil
	}
	return err
}

func (a *app) list(ctx context.Context, path string) error {
	bw := bufio.NewWriterSize(a.stdout, 64<<10)
	var out entryWriter
	if a.output == outputJSON {
		out = newJSONEntries(bw)
	} else {
		out = newTableEntries(bw)
	}
	dir := false
	if path != stdio {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		dir = st.IsDir()
	}
	var err error
	if dir {
		err = inspectLayer(ctx, path, out.write)
	} else {
		err = a.inspectTar(ctx, path, out.write)
	}
	if err != nil {
		// Show the entries before the failure; the output stays unfinished.
		out.abort()
		bw.Flush()
		return err
	}
	if err := out.close(); err != nil {
		return err
	}
	return bw.Flush()
}

func inspectLayer(ctx context.Context, path string, fn func(*winlayer.Entry) error) error {
	if err := checkLayerDir(path); err != nil {
		return err
	}
	r, err := winlayer.NewReader(ctx, path)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func (a *app) inspectTar(ctx context.Context, file string, fn func(*winlayer.Entry) error) error {
	in, err := a.openInput(file)
	if err != nil {
		return err
	}
	defer in.close()
	rc, err := compress.NewReader(in)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", in.name, err)
	}
	defer rc.Close()
	if err := ociwclayer.ScanTar(ctx, ctxReader{ctx, rc}, fn); err != nil {
		return fmt.Errorf("inspect %s: %w", in.name, err)
	}
	return nil
}

// describe converts an entry to its inspect form.
func describe(e *winlayer.Entry) *inspectEntry {
	d := &inspectEntry{Entry: Entry{Path: e.Name}}
	if e.Removed {
		d.Type = typeWhiteout
		d.Attributes = newAttributes(0)
		d.Times = newTimes(winfile.BasicInfo{})
		return d
	}
	d.Size = e.Size
	d.NoDataStream = e.NoDataStream
	d.Attributes = newAttributes(e.Info.FileAttributes)
	d.Times = newTimes(e.Info)
	if e.SecurityDescriptor != nil {
		sddl, err := winfile.SDDL(e.SecurityDescriptor)
		if err != nil {
			d.SDError = err.Error()
		}
		d.SecurityDescriptor = sddl
	}
	for _, ea := range e.ExtendedAttributes {
		d.ExtendedAttributes = append(d.ExtendedAttributes, EA{Name: ea.Name, Flags: ea.Flags, Value: ea.Value})
	}
	for _, s := range e.Streams {
		d.Streams = append(d.Streams, Stream{Name: s.Name, Size: s.Size})
	}
	switch {
	case e.LinkTarget != "":
		d.Type = typeLink
		d.Target = e.LinkTarget
	case len(e.Reparse) > 0:
		d.Type = typeReparse
		rp, err := winfile.DecodeReparsePoint(e.Reparse)
		switch {
		case err != nil:
			if len(e.Reparse) >= 4 {
				d.ReparseTag = tagString(binary.LittleEndian.Uint32(e.Reparse))
			}
		case rp.Tag == winfile.ReparseTagSymlink:
			d.Type, d.Target = typeSymlink, rp.Target()
		case rp.Tag == winfile.ReparseTagMountPoint:
			d.Type, d.Target = typeJunction, rp.Target()
		default:
			d.ReparseTag = tagString(rp.Tag)
		}
	case e.IsDir():
		d.Type = typeDir
	default:
		d.Type = typeFile
	}
	return d
}

func tagString(tag uint32) string { return fmt.Sprintf("0x%08x", tag) }

// entryWriter prints entries as they come.
type entryWriter interface {
	write(*winlayer.Entry) error
	close() error // finish the output
	abort()       // write out what is buffered, leaving the output unfinished
}

// jsonEntries streams {"entries":[...]} with one entry per line.
type jsonEntries struct {
	w     *bufio.Writer
	buf   bytes.Buffer
	enc   *json.Encoder
	count int
}

func newJSONEntries(w *bufio.Writer) *jsonEntries {
	j := &jsonEntries{w: w}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	return j
}

func (j *jsonEntries) write(e *winlayer.Entry) error {
	j.buf.Reset()
	if j.count == 0 {
		j.buf.WriteString("{\"entries\":[\n")
	} else {
		j.buf.WriteString(",\n")
	}
	j.count++
	if err := j.enc.Encode(describe(e)); err != nil {
		return err
	}
	b := bytes.TrimSuffix(j.buf.Bytes(), []byte("\n"))
	_, err := j.w.Write(b)
	return err
}

func (j *jsonEntries) abort() {}

func (j *jsonEntries) close() error {
	if j.count == 0 {
		_, err := j.w.WriteString("{\"entries\":[]}\n")
		return err
	}
	_, err := j.w.WriteString("\n]}\n")
	return err
}

// tableRows is how many rows share one column layout; tabwriter keeps them in memory.
const tableRows = 4096

// maxTableSD is the length at which table cells shorten security descriptors.
const maxTableSD = 40

type tableEntries struct {
	tw   *tabwriter.Writer
	rows int
}

func newTableEntries(w io.Writer) *tableEntries {
	return &tableEntries{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

const tableHeader = "TYPE\tSIZE\tATTRIBUTES\tMODIFIED\tCREATED\tSD\tEAS\tSTREAMS\tNAME"

func (t *tableEntries) write(e *winlayer.Entry) error {
	d := describe(e)
	switch {
	case t.rows == 0:
		fmt.Fprintln(t.tw, tableHeader)
	case t.rows%tableRows == 0:
		if err := t.tw.Flush(); err != nil {
			return err
		}
	}
	t.rows++
	size := "-"
	if d.Type == typeFile {
		size = strconv.FormatInt(d.Size, 10)
	}
	sd := d.SecurityDescriptor
	if d.SDError != "" {
		sd = "(invalid)"
	} else if len(sd) > maxTableSD {
		sd = sd[:maxTableSD-3] + "..."
	}
	var eas, streams []string
	for _, ea := range d.ExtendedAttributes {
		eas = append(eas, fmt.Sprintf("%s(%d)", ea.Name, len(ea.Value)))
	}
	for _, s := range d.Streams {
		name := strings.TrimSuffix(strings.TrimPrefix(s.Name, ":"), ":$DATA")
		streams = append(streams, fmt.Sprintf("%s:%d", name, s.Size))
	}
	// The name comes last, unpadded, as names vary most in length.
	name := d.Path
	attrs, modified, created := winfile.AttributeString(d.Attributes.Attributes), d.LastWriteTime, d.CreationTime
	if d.Type == typeWhiteout {
		attrs, modified, created = "", "", ""
	}
	switch {
	case d.Target != "":
		name += " -> " + d.Target
	case d.ReparseTag != "":
		name += " (reparse tag " + d.ReparseTag + ")"
	}
	_, err := fmt.Fprintln(t.tw, strings.Join([]string{
		d.Type, size, cell(attrs), cell(modified), cell(created), cell(sd),
		cell(strings.Join(eas, ",")), cell(strings.Join(streams, ",")), cell(name),
	}, "\t"))
	return err
}

func (t *tableEntries) abort() { t.tw.Flush() }

func (t *tableEntries) close() error {
	if t.rows == 0 {
		fmt.Fprintln(t.tw, tableHeader)
	}
	return t.tw.Flush()
}

// cell makes a value safe for one table cell on a terminal: "-" when empty, control
// characters (tabs, newlines, escape sequences) replaced by '?'.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
