package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/progress"
	"github.com/hostcompute/hostcompute/internal/staging"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/dmverity"
	"github.com/hostcompute/hostcompute/pkg/ext4"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

const tar2ext4Long = `Convert a Linux layer tar (plain, gzip or zstd) to an ext4 file system image,
optionally followed by a dm-verity hash tree and a fixed VHD footer, in that
order: ext4 | verity superblock + tree | VHD footer.

The command line is hcsshim's tar2ext4's, so that scripts can swap the two: flags
take one or two dashes and come after "tar2ext4" (the global -o/--output of the
other commands is -output here, since -o names the image).

hcsshim tar2ext4 flags:
  -i FILE          input tar (default: standard input)
  -o FILE          output image (required); replaced atomically on success
  -overlay         turn OCI whiteouts into overlayfs whiteouts (alias -convert-whiteout)
  -convert-slash   replace '\' with '/' in names
  -vhd             append a fixed VHD footer
  -only-vhd        copy the input unchanged and append a VHD footer; other flags ignored
  -inline          store files of up to 136 bytes inside their inode (not for DAX)

Further flags:
  -compat          byte-identical output to hcsshim v0.13.0's tar2ext4 (its defects
                   included), for root hashes pinned by hcsshim tooling
  -dm-verity       (also -dmverity, -verity) append a dm-verity superblock and hash
                   tree (sha256, 4096-byte
                   blocks, 32 zero bytes of salt: hcsshim's parameters) and report the
                   root hash
  -root-hash FILE  also write the root hash (hex) to FILE
  -max-disk-size SIZE  maximum image size, such as 128G (default 16G); it also
                   sizes the reserved group descriptors, so it changes the bytes
  -output FORMAT   result as text or json
  -q, -quiet       no progress line and no text result
  -debug           debugging log on standard error

Without -compat the image is deterministic and passes e2fsck -fn: the UUID is
derived from the content, duplicate entries resolve last-wins, all-zero blocks
become holes, and directories the tar implies but never lists get mode 0755,
owner 0:0 and the tar's latest modification time. The footer has hcsshim's field
values, with a unique ID derived from the image instead of a random one; the
verity superblock's UUID is derived likewise.

` + exitCodesHelp

func (a *app) newTar2Ext4Command() *cobra.Command {
	return &cobra.Command{
		Use:                "tar2ext4 -o FILE [-i FILE] [flags]",
		Short:              "Convert a Linux layer tar to an ext4 image (hcsshim tar2ext4 compatible)",
		Long:               tar2ext4Long,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runTar2Ext4(cmd, args)
		},
	}
}

type tar2ext4Flags struct {
	input, output                       string
	overlay, convertSlash, vhd, onlyVHD bool
	inline, compat, verity              bool
	rootHash, maxDiskSize               string
}

func (a *app) runTar2Ext4(cmd *cobra.Command, args []string) error {
	var fl tar2ext4Flags
	fs := flag.NewFlagSet("tar2ext4", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&fl.input, "i", "", "")
	fs.StringVar(&fl.output, "o", "", "")
	fs.BoolVar(&fl.overlay, "overlay", false, "")
	fs.BoolVar(&fl.overlay, "convert-whiteout", false, "")
	fs.BoolVar(&fl.convertSlash, "convert-slash", false, "")
	fs.BoolVar(&fl.vhd, "vhd", false, "")
	fs.BoolVar(&fl.onlyVHD, "only-vhd", false, "")
	fs.BoolVar(&fl.inline, "inline", false, "")
	fs.BoolVar(&fl.compat, "compat", false, "")
	for _, name := range []string{"dm-verity", "dmverity", "verity"} {
		fs.BoolVar(&fl.verity, name, false, "")
	}
	fs.StringVar(&fl.rootHash, "root-hash", "", "")
	fs.StringVar(&fl.maxDiskSize, "max-disk-size", "", "")
	// Defaults are what global flags before "tar2ext4" said.
	fs.StringVar(&a.output, "output", a.output, "")
	fs.BoolVar(&a.quiet, "q", a.quiet, "")
	fs.BoolVar(&a.quiet, "quiet", a.quiet, "")
	fs.BoolVar(&a.debug, "debug", a.debug, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cmd.Help()
		}
		return usageError{err}
	}
	if fs.NArg() != 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	if fl.output == "" {
		return usageErrorf("-o FILE is required")
	}
	if fl.rootHash != "" && (!fl.verity || fl.onlyVHD) {
		return usageErrorf("-root-hash needs -dm-verity (and no -only-vhd)")
	}
	if err := a.setup(cmd, nil); err != nil {
		return err
	}
	var opts []ext4.Option
	if fl.maxDiskSize != "" {
		n, err := parseSize(fl.maxDiskSize)
		if err != nil {
			return usageError{err}
		}
		opts = append(opts, ext4.WithMaximumDiskSize(n))
	}
	a.running = true
	if fl.overlay {
		opts = append(opts, ext4.WithConvertWhiteouts())
	}
	if fl.convertSlash {
		opts = append(opts, ext4.WithConvertBackslash())
	}
	if fl.inline {
		opts = append(opts, ext4.WithInlineData())
	}
	if fl.compat {
		opts = append(opts, ext4.WithHcsshimCompat())
	}
	return a.tar2ext4(cmd, &fl, opts)
}

// verityParams are hcsshim's dm-verity parameters, with a UUID derived from the tree.
var verityParams = dmverity.Params{Hcsshim: true}

// tar2ext4Result is the -output json document.
type tar2ext4Result struct {
	File     string       `json:"file"`
	Size     int64        `json:"size"`
	Ext4Size int64        `json:"ext4Size"`
	Ext4     *ext4.Result `json:"ext4,omitempty"`
	UUID     string       `json:"uuid,omitempty"`
	Compat   bool         `json:"compat"`
	VHD      bool         `json:"vhd"`
	Verity   *verityJSON  `json:"dmVerity,omitempty"`
	Duration
}

type verityJSON struct {
	RootHash   string `json:"rootHash"`
	Salt       string `json:"salt"`
	UUID       string `json:"uuid"`
	DataBlocks int64  `json:"dataBlocks"`
	HashOffset int64  `json:"hashOffset"`
	TreeSize   int64  `json:"treeSize"`
}

func (a *app) tar2ext4(cmd *cobra.Command, fl *tar2ext4Flags, opts []ext4.Option) (err error) {
	streamingGC()
	ctx := cmd.Context()
	start := time.Now()
	var in io.Reader = a.stdin
	var total int64 = -1
	if (fl.input == "" || fl.input == stdio) && progress.IsTerminal(a.stdin) {
		return usageErrorf("refusing to read a tar from a terminal: give -i FILE or redirect standard input")
	}
	if fl.input != "" && fl.input != stdio {
		f, err := os.Open(fl.input)
		if err != nil {
			return fmt.Errorf("tar2ext4: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			total = st.Size()
		}
		in = f
	}
	bar := a.progress("tar2ext4", total)
	defer bar.Stop()
	counted := bar.Reader(in)

	a.stagingIn("staging", filepath.Dir(fl.output))
	out, tmp, err := stageFile(fl.output)
	if err != nil {
		return fmt.Errorf("tar2ext4: %w", err)
	}
	defer func() {
		if err != nil {
			out.Close()
			if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				a.log.Warn("removing temporary file", logKeyFile, tmp, logKeyError, rerr)
			}
		}
	}()

	res := tar2ext4Result{File: absPath(fl.output), Compat: fl.compat, VHD: fl.vhd || fl.onlyVHD}
	var rootHash []byte
	if fl.onlyVHD {
		// As hcsshim: the input is copied as it is, compressed or not.
		n, err := io.Copy(out, counted)
		if err != nil {
			return fmt.Errorf("tar2ext4: copying input: %w", err)
		}
		res.Size = n
	} else {
		r, format, err := compress.NewReaderFormat(counted)
		if err != nil {
			return fmt.Errorf("tar2ext4: %w", err)
		}
		defer r.Close()
		a.log.Debug("input", logKeyFile, fl.input, logKeyCompression, format.String())
		// With dm-verity the data blocks are hashed as the image is written, so the
		// tree needs only the few blocks patched afterwards read back.
		var level0 *dmverity.Level0
		if fl.verity {
			if level0, err = dmverity.NewLevel0(verityParams, 0); err != nil {
				return fmt.Errorf("tar2ext4: dm-verity: %w", err)
			}
			opts = append(opts, ext4.WithWriteObserver(level0))
		}
		er, err := ext4.Build(ctx, out, r, opts...)
		if err != nil {
			return fmt.Errorf("tar2ext4: %w", err)
		}
		res.Ext4, res.Ext4Size, res.Size = er, er.Size, er.Size
		if !fl.compat {
			res.UUID = formatUUID(er.UUID)
		}
		if fl.verity {
			info, err := dmverity.AppendLevel0(ctx, out, er.Size, verityParams, level0)
			if err != nil {
				return fmt.Errorf("tar2ext4: dm-verity: %w", err)
			}
			rootHash = info.RootHash
			res.Size = info.End()
			res.Verity = &verityJSON{RootHash: info.RootHashHex(), Salt: info.SaltHex(), UUID: formatUUID(info.UUID),
				DataBlocks: info.DataBlocks, HashOffset: info.HashOffset, TreeSize: info.TreeSize}
		}
		// Read the rest (the tar trailer) so that a writer into a pipe does not fail.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("tar2ext4: reading past the tar: %w", err)
		}
	}
	if res.VHD {
		id, err := footerID(out, res.Size, rootHash)
		if err != nil {
			return fmt.Errorf("tar2ext4: %w", err)
		}
		if err := vhd.AppendFixedFooter(out, res.Size, hcsshimFooter(res.Size, id)); err != nil {
			return fmt.Errorf("tar2ext4: VHD footer: %w", err)
		}
		res.Size += 512
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("tar2ext4: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("tar2ext4: %w", err)
	}
	if fl.rootHash != "" {
		if _, err := a.writeFileAtomically(fl.rootHash, "root-hash", func(w io.Writer) (int64, error) {
			n, err := fmt.Fprintln(w, res.Verity.RootHash)
			return int64(n), err
		}); err != nil {
			return fmt.Errorf("tar2ext4: writing root hash: %w", err)
		}
	}
	if err := os.Rename(tmp, fl.output); err != nil {
		return fmt.Errorf("tar2ext4: %w", err)
	}
	syncDir(filepath.Dir(fl.output))
	bar.Stop()
	res.Duration = newDuration(time.Since(start))

	var b strings.Builder
	fmt.Fprintf(&b, "wrote %s: %d bytes", fl.output, res.Size)
	if res.Ext4 != nil {
		fmt.Fprintf(&b, " (ext4 %d", res.Ext4Size)
		if res.Verity != nil {
			fmt.Fprintf(&b, ", dm-verity %d", 4096+res.Verity.TreeSize)
		}
		if res.VHD {
			b.WriteString(", VHD footer 512")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " in %s", seconds(time.Since(start)))
	if res.Verity != nil {
		fmt.Fprintf(&b, "\nroot hash %s", res.Verity.RootHash)
	}
	return a.result(b.String(), res)
}

// stageFile creates a temporary file beside path, to be renamed over it.
func stageFile(path string) (*os.File, string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, "", fmt.Errorf("%s is a directory", path)
	}
	tmp := staging.Name(path)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, "", err
	}
	return f, tmp, nil
}

// hcsshimFooter is the fixed footer hcsshim's tar2ext4 writes: no creator
// application, host OS, time stamp or geometry. Only the unique ID differs: hcsshim
// draws it at random, here it is derived from the image.
func hcsshimFooter(size int64, id [16]byte) *vhd.Footer {
	return &vhd.Footer{
		Features:       2,
		Version:        0x00010000,
		DataOffset:     vhd.FixedDataOffset,
		CreatorVersion: 0x000a0000,
		OriginalSize:   uint64(size),
		CurrentSize:    uint64(size),
		DiskType:       vhd.DiskTypeFixed,
		UniqueID:       id,
	}
}

// footerID derives the footer's unique ID from the image: its size, root hash, first
// 8 KiB (superblock and group descriptors) and last MiB (bitmaps and inode table, or
// the hash tree).
func footerID(f *os.File, size int64, rootHash []byte) ([16]byte, error) {
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, size)
	h.Write(rootHash)
	head := make([]byte, min(size, 8192))
	if _, err := f.ReadAt(head, 0); err != nil {
		return [16]byte{}, err
	}
	h.Write(head)
	tailLen := min(size, 1<<20)
	tail := make([]byte, tailLen)
	if _, err := f.ReadAt(tail, size-tailLen); err != nil {
		return [16]byte{}, err
	}
	h.Write(tail)
	var id [16]byte
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x80
	id[8] = id[8]&0x3f | 0x80
	return id, nil
}

func formatUUID(u [16]byte) string {
	if u == [16]byte{} {
		return ""
	}
	var b bytes.Buffer
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b.WriteByte('-')
		}
		fmt.Fprintf(&b, "%02x", c)
	}
	return b.String()
}
