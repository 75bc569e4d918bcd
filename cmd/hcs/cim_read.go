package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// cimEntry is the shared Entry of a CIM file record.
func cimEntry(p string, fi *cimfs.FileInfo) Entry {
	id := uint32(fi.ID)
	e := Entry{Path: p, Size: fi.Size, Attributes: newAttributes(fi.Info.FileAttributes), Times: newTimes(fi.Info),
		FileID: &id, NoDataStream: fi.NoDataStream, Type: typeFile}
	switch {
	case fi.ReparseTag == winfile.ReparseTagSymlink:
		e.Type = typeSymlink
	case fi.ReparseTag == winfile.ReparseTagMountPoint:
		e.Type = typeJunction
	case fi.ReparseTag != 0:
		e.Type, e.ReparseTag = typeReparse, tagString(fi.ReparseTag)
	case fi.IsDir():
		e.Type = typeDir
	}
	return e
}

func (a *app) newCIMLsCommand() *cobra.Command {
	var long, recursive bool
	cmd := &cobra.Command{
		Use:   "ls [flags] CIM [PATH]",
		Short: "List a directory of a CIM",
		Long: `List the directory PATH (the root by default) of a CIM, in the image's own
order (by upper-cased name). Paths use / or \ and are case-insensitive. -l adds
attributes, size and last write time; -R lists subdirectories too. -o json gives
an array of entries (see README's JSON output: "path", "type", "size",
"attributes", "attributeNames", the four times, "fileId").`,
		Example: `  hcs cim ls /var/lib/hcs/snapshots/1 Files/Windows
  hcs cim ls -lR -o json base.cim`,
		Args: cobra.RangeArgs(1, 2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			p := ""
			if len(args) == 2 {
				p = cimInnerPath(args[1])
			}
			return a.cimLs(cmd.Context(), args[0], p, long, recursive)
		}),
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show attributes, size and time")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list subdirectories too")
	return cmd
}

func (a *app) cimLs(ctx context.Context, arg, dir string, long, recursive bool) error {
	im, err := openCIM(arg)
	if err != nil {
		return err
	}
	defer im.Close()
	id, err := im.Lookup(dir)
	if err != nil {
		return fmt.Errorf("CIM %s: %s: %w", arg, dir, err)
	}
	if fi, err := im.StatID(id); err == nil && !fi.IsDir() {
		return fmt.Errorf("CIM %s: %s is not a directory: %w", arg, dir, fs.ErrInvalid)
	}
	var out []Entry
	var text strings.Builder
	seen := map[cimfs.FileID]bool{}
	var walk func(id cimfs.FileID, prefix string) error
	walk = func(id cimfs.FileID, prefix string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if seen[id] {
			return fmt.Errorf("%w: directory %d reached twice", cimfs.ErrInvalidFormat, id)
		}
		seen[id] = true
		ents, err := im.ReadDirID(id)
		if err != nil {
			return err
		}
		var dirs []cimfs.DirEntry
		for _, e := range ents {
			fi, err := im.StatID(e.ID)
			if err != nil {
				return err
			}
			p := path.Join(prefix, e.Name)
			out = append(out, cimEntry(p, fi))
			name := e.Name
			if recursive {
				name = p
			}
			if fi.IsDir() {
				name += "/"
				dirs = append(dirs, e)
			}
			if long {
				fmt.Fprintf(&text, "%-24s %12d %s %s\n", winfile.AttributeString(fi.Info.FileAttributes), fi.Size,
					fi.Info.LastWriteTime.Time().Format(time.RFC3339), name)
			} else {
				fmt.Fprintln(&text, name)
			}
		}
		if recursive {
			for _, d := range dirs {
				if err := walk(d.ID, path.Join(prefix, d.Name)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(id, strings.ReplaceAll(dir, `\`, "/")); err != nil {
		return err
	}
	if out == nil {
		out = []Entry{}
	}
	return a.result(strings.TrimSuffix(text.String(), "\n"), out)
}

func (a *app) newCIMCatCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cat CIM PATH[:STREAM]",
		Short: "Write a file of a CIM to standard output",
		Long: `Write the data of the file PATH of a CIM to standard output; PATH:STREAM writes
the alternate data stream STREAM instead.`,
		Example: `  hcs cim cat base.cim 'Files/Windows/win.ini'
  hcs cim cat base.cim 'Files/setup.exe:Zone.Identifier'`,
		Args: cobra.ExactArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			im, err := openCIM(args[0])
			if err != nil {
				return err
			}
			defer im.Close()
			inner := cimInnerPath(args[1])
			file, _, _ := strings.Cut(inner, ":")
			if fi, err := im.Stat(file); err != nil {
				return fmt.Errorf("CIM %s: %s: %w", args[0], args[1], err)
			} else if fi.IsDir() {
				return fmt.Errorf("CIM %s: %s is a directory: %w", args[0], args[1], fs.ErrInvalid)
			}
			f, err := im.Open(inner)
			if err != nil {
				return fmt.Errorf("CIM %s: %s: %w", args[0], args[1], err)
			}
			bw := bufio.NewWriterSize(a.stdout, 256<<10)
			if _, err := io.Copy(ctxWriter{cmd.Context(), bw}, f); err != nil {
				return err
			}
			return bw.Flush()
		}),
	}
}

// cimStat is the shared Entry with what only a CIM record holds: whether this
// layer added the file, and the binary values the entry shows decoded.
type cimStat struct {
	Entry
	Added         bool   `json:"added"`
	SDBase64      string `json:"securityDescriptorBase64,omitempty"`
	ReparseBase64 string `json:"reparseBase64,omitempty"`
}

func (a *app) newCIMStatCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stat CIM PATH",
		Short: "Show the Windows metadata of a file of a CIM",
		Long: `Show the file record of PATH: ID, attributes, size, the four times, whether this
layer added it, the security descriptor (as SDDL), extended attributes, the
reparse point and the alternate data streams. -o json gives all of it, binary
values in base64.`,
		Args: cobra.ExactArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			im, err := openCIM(args[0])
			if err != nil {
				return err
			}
			defer im.Close()
			fi, err := im.Stat(cimInnerPath(args[1]))
			if err != nil {
				return fmt.Errorf("CIM %s: %s: %w", args[0], args[1], err)
			}
			st, err := statOf(args[1], fi)
			if err != nil {
				return err
			}
			return a.result(st.text(), st)
		}),
	}
}

func statOf(p string, fi *cimfs.FileInfo) (*cimStat, error) {
	st := &cimStat{Entry: cimEntry(strings.Trim(strings.ReplaceAll(p, `\`, "/"), "/"), fi), Added: fi.Added}
	for _, s := range fi.Streams {
		st.Streams = append(st.Streams, Stream{Name: s.Name, Size: s.Size})
	}
	sd, err := fi.SecurityDescriptor()
	if err != nil {
		return nil, err
	}
	if sd != nil {
		st.SDBase64 = base64.StdEncoding.EncodeToString(sd)
		if st.SecurityDescriptor, err = winfile.SDDL(sd); err != nil {
			return nil, err
		}
	}
	ea, err := fi.ExtendedAttributes()
	if err != nil {
		return nil, err
	}
	if len(ea) > 0 {
		eas, err := winfile.DecodeExtendedAttributes(ea)
		if err != nil {
			return nil, err
		}
		for _, e := range eas {
			st.ExtendedAttributes = append(st.ExtendedAttributes, EA{Name: e.Name, Flags: e.Flags, Value: e.Value})
		}
	}
	rp, err := fi.ReparseData()
	if err != nil {
		return nil, err
	}
	if rp != nil {
		st.ReparseBase64 = base64.StdEncoding.EncodeToString(rp)
		if d, err := winfile.DecodeReparsePoint(rp); err == nil && d.IsSymlinkOrMountPoint() {
			st.Target = d.Target()
		}
	}
	return st, nil
}

func (st *cimStat) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "path:        %s\nid:          %d\nattributes:  %s\nsize:        %d\n", st.Path, *st.FileID, winfile.AttributeString(st.Attributes.Attributes), st.Size)
	for _, t := range [][2]string{{"created", st.CreationTime}, {"written", st.LastWriteTime}, {"changed", st.ChangeTime}, {"accessed", st.LastAccessTime}} {
		fmt.Fprintf(&b, "%-12s %s\n", t[0]+":", t[1])
	}
	fmt.Fprintf(&b, "added:       %v\n", st.Added)
	if st.NoDataStream {
		fmt.Fprintf(&b, "data stream: none\n")
	}
	if st.SecurityDescriptor != "" {
		fmt.Fprintf(&b, "security:    %s\n", st.SecurityDescriptor)
	}
	for _, e := range st.ExtendedAttributes {
		fmt.Fprintf(&b, "ea:          %s (%s)\n", e.Name, base64.StdEncoding.EncodeToString(e.Value))
	}
	if st.ReparseBase64 != "" {
		fmt.Fprintf(&b, "reparse:     %s %s\n", st.Type, st.Target)
	}
	for _, s := range st.Streams {
		fmt.Fprintf(&b, "stream:      %s (%d bytes)\n", s.Name, s.Size)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// cimVerifyResult is the -o json document of cim verify.
type cimVerifyResult struct {
	CIM string `json:"cim"`
	CheckResult
}

func (a *app) newCIMVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify CIM",
		Short: "Check every structure of a CIM",
		Long: `Walk every structure of a CIM: headers, region and object ID files, file
tables, every record reachable from the root (and no others), directory and
stream tables (bounds, names, order), data extents, security descriptors,
extended attributes, reparse buffers and the removal list; for images written by
hcs the digest of every stored object is recomputed.

Exit code 0 when the image is sound, 3 when it is corrupt (the first problem is
printed with its file, structure and offset), 5 when a file is missing.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			p, err := cimPath(args[0])
			if err != nil {
				return err
			}
			im, err := cimfs.Open(p)
			if err == nil {
				err = im.Verify()
				im.Close()
			}
			var problems []string
			if err != nil {
				if !errors.Is(err, cimfs.ErrInvalidFormat) && !errors.As(err, new(*cimfs.FormatError)) {
					return fmt.Errorf("CIM %s: %w", args[0], err)
				}
				problems = []string{err.Error()}
			}
			res := cimVerifyResult{CIM: absPath(p), CheckResult: newCheckResult(problems)}
			if len(problems) > 0 {
				if a.output == outputJSON {
					a.result("", res)
					return reportedError{fmt.Errorf("CIM %s: %w", args[0], err)}
				}
				return fmt.Errorf("CIM %s: %w", args[0], err)
			}
			return a.result("CIM "+args[0]+" is sound", res)
		}),
	}
}
