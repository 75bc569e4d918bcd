package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/staging"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// Targets of vhd convert.
const (
	targetRaw              = "raw"
	targetVHDFixed         = "vhd-fixed"
	targetVHDDynamic       = "vhd-dynamic"
	targetVHDDifferencing  = "vhd-differencing"
	targetVHDXFixed        = "vhdx-fixed"
	targetVHDXDynamic      = "vhdx-dynamic"
	targetVHDXDifferencing = "vhdx-differencing"
)

var convertTargets = []string{targetRaw, targetVHDFixed, targetVHDDynamic, targetVHDDifferencing, targetVHDXFixed, targetVHDXDynamic, targetVHDXDifferencing}

const (
	// convertRead is the unit read from the source, convertZero the unit tested
	// for zeros (and then not written).
	convertRead = 4 << 20
	convertZero = 1 << 20
	// convertAhead is the number of chunks read ahead of the writer.
	convertAhead = 4
)

// convertOptions are the flags of vhd convert that shape the new disk.
type convertOptions struct {
	format     string // of SRC: auto, raw, vhd or vhdx
	target     string
	parent     string
	blockSize  int64
	sectorSize int
}

func (a *app) newVHDConvertCommand() *cobra.Command {
	var o convertOptions
	var blockSize string
	cmd := &cobra.Command{
		Use:   "convert [flags] SRC DST",
		Short: "Convert between raw images, VHD and VHDX",
		Long: `Copy the virtual disk of SRC into a new disk DST of the format given by --to:
raw, vhd-fixed, vhd-dynamic, vhd-differencing, vhdx-fixed, vhdx-dynamic or
vhdx-differencing. SRC is any disk that hcs vhd opens (VHD or VHDX of any type,
read through its parents), or a raw image. The format of SRC is told from its
content: VHDX by its signature, VHD by its footer (a VHD whose footer is cut
short is refused as damaged, exit code 3), a raw image by the file system or
partition table it holds; any other file is refused unless --format raw says
it is a raw image. Without --to the format follows DST's name: .vhdx makes
vhdx-dynamic, .vhd vhd-dynamic, .img or .raw raw; for other names a raw SRC
becomes vhd-dynamic and a disk becomes raw.

A differencing target needs --parent, a disk of the target's format and of
SRC's size; only what differs from the parent is written to DST. --block-size
and --logical-sector-size (VHDX: 512 or 4096) are as for hcs vhd create.

Zeros are not written: holes of a raw SRC are skipped without reading them
(SEEK_DATA), and each MiB of zeros read is left unallocated, so every target is
sparse. A raw SRC is mapped into memory to find its zeros, and its data is moved
into a VHD, fixed VHD or fixed or dynamic VHDX with copy_file_range, inside the
kernel; writeback of DST starts during the copy. A raw SRC whose size is not a multiple of the sector size is padded
with zeros. A progress line is drawn on a terminal.

DST must not exist (exit code 4). The copy is written to a temporary file
beside DST (.DST.hcs-tmp-PID-START-RANDOM, named after this process) and
linked into place only when complete and synced, so a failure or an
interruption leaves nothing behind; what a killed convert left is removed by
the next convert or create in that folder.`,
		Args: cobra.ExactArgs(2),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := checkDiskFormat("format", o.format); err != nil {
				return err
			}
			if o.target != "" && !slices.Contains(convertTargets, o.target) {
				return usageErrorf("invalid --to %q: want one of %s", o.target, strings.Join(convertTargets, ", "))
			}
			if diff := strings.HasSuffix(o.target, "-differencing"); diff != (o.parent != "") {
				if diff {
					return usageErrorf("--to %s needs --parent", o.target)
				}
				return usageErrorf("--parent is only for a differencing --to")
			}
			if o.sectorSize != 0 && !strings.HasPrefix(o.target, "vhdx-") && o.sectorSize != vhd.SectorSize {
				return usageErrorf("--logical-sector-size %d is only for VHDX targets", o.sectorSize)
			}
			if blockSize != "" {
				n, err := parseSize(blockSize)
				if err != nil || n > 1<<31 {
					return usageErrorf("invalid --block-size %q", blockSize)
				}
				o.blockSize = n
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			if err := existing(dst); err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			in, format, err := openDisk(src, o.format, true)
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			defer in.Close()
			opts := o
			if opts.target == "" {
				switch vhd.FormatFromName(dst) {
				case vhd.FormatVHDX:
					opts.target = targetVHDXDynamic
				case vhd.FormatVHD:
					opts.target = targetVHDDynamic
				case vhd.FormatRaw:
					opts.target = targetRaw
				default:
					opts.target = targetRaw
					if format == formatRaw {
						opts.target = targetVHDDynamic
					}
				}
			}
			start := time.Now()
			size, written, err := a.convert(cmd, in, dst, opts)
			if errors.Is(err, vhd.ErrInvalidOptions) {
				return usageError{fmt.Errorf("convert: %w", err)}
			}
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			elapsed := time.Since(start)
			return a.result(fmt.Sprintf("converted %s (%s) to %s (%s): %d bytes, %d written in %s", src, format, dst, opts.target, size, written, seconds(elapsed)),
				vhdConvertResult{Disk: Disk{File: absPath(dst), Format: targetFormat(opts.target), VirtualSize: size},
					Type: targetType(opts.target), Source: absPath(src), SourceFormat: format, Parent: absPath(opts.parent),
					BytesWritten: written, Duration: newDuration(elapsed)})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "auto", "`FORMAT` of SRC: auto (from its content), raw, vhd or vhdx")
	f.StringVar(&o.target, "to", "", "target `FORMAT`: "+strings.Join(convertTargets, ", ")+" (default from DST's name)")
	f.StringVar(&o.parent, "parent", "", "parent `FILE` of a differencing target")
	f.StringVar(&blockSize, "block-size", "", "block size of the new disk (default as hcs vhd create)")
	f.IntVar(&o.sectorSize, "logical-sector-size", 0, "logical sector size of a VHDX target: 512 (default) or 4096")
	return cmd
}

// diskWriter is a new disk being written.
type diskWriter interface {
	io.WriterAt
	Close() error
}

// rawWriter is a raw image being written; Close syncs it.
type rawWriter struct{ *os.File }

func (w rawWriter) Close() error {
	err := w.Sync()
	if cerr := w.File.Close(); err == nil {
		err = cerr
	}
	return err
}

// convert copies in to a new file dst of the target format and returns the virtual
// size and the bytes written.
func (a *app) convert(cmd *cobra.Command, in virtualDisk, dst string, o convertOptions) (size, written int64, err error) {
	a.stagingIn("staging", filepath.Dir(dst))
	tmp := staging.Name(dst)
	out, parent, size, err := createTarget(tmp, in.Size(), o)
	if err != nil {
		return 0, 0, err
	}
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				out.Close()
			}
			os.Remove(tmp)
		}
	}()
	if parent != nil {
		defer parent.Close()
	}
	a.log.Debug("converting", logKeyFile, dst, "target", o.target, logKeyBytes, size)
	bar := a.progress("convert", size)
	defer bar.Stop()
	wb, err := startWriteback(tmp)
	if err != nil {
		return 0, 0, err
	}
	written, err = copyDisk(cmd.Context(), in, out, parent, size, bar.Add, wb.kick)
	wb.stop()
	if err != nil {
		return 0, 0, err
	}
	closed = true
	if err := out.Close(); err != nil {
		return 0, 0, err
	}
	// A signal that came during the final sync still stops the command: the
	// copy is not made visible.
	if err := cmd.Context().Err(); err != nil {
		return 0, 0, err
	}
	// Link rather than rename, so that a DST created meanwhile is not replaced.
	if err := os.Link(tmp, dst); err != nil {
		return 0, 0, err
	}
	if err := os.Remove(tmp); err != nil {
		return 0, 0, err
	}
	return size, written, nil
}

// segment is a run of source data to write at off.
type segment struct {
	off int64
	b   []byte
}

// chunk is what the reader hands the writer: the segments of one read that are
// not zeros (nor equal to the parent), and the buffer to give back.
type chunk struct {
	segs []segment
	buf  []byte
	src  []byte // the mapped source range read, if mapped
	err  error
}

// copyDisk copies the first size bytes of in (zeros past its end) to out. A
// reader goroutine reads ahead, skipping the holes of a raw source and dropping
// zero MiBs (and, with a parent, MiBs the parent already has), while this
// goroutine writes.
func copyDisk(ctx context.Context, in virtualDisk, out io.WriterAt, parent *vhd.Disk, size int64, progress func(int64), wrote func(int64)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan []byte, convertAhead)
	for range convertAhead {
		free <- make([]byte, convertRead)
	}
	chunks := make(chan chunk, convertAhead)
	send := func(c chunk) error {
		select {
		case chunks <- c:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// A raw source copied into a disk that takes copy_file_range is mapped:
	// its zeros are found without copying it, and the data moves in the kernel.
	var mapped []byte
	src, copier := sourceFile(in), targetCopier(out, parent)
	if src != nil && copier != nil && in.Size() > 0 {
		if m, err := unix.Mmap(int(src.Fd()), 0, int(in.Size()), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			mapped = m
			defer unix.Munmap(m)
			_ = unix.Madvise(m, unix.MADV_SEQUENTIAL)
		}
	}
	done := make(chan struct{})
	defer func() { cancel(); <-done }() // the reader no longer touches mapped
	go func() {
		defer close(done)
		defer close(chunks)
		if mapped != nil {
			// A source truncated meanwhile faults: an error, not a crash.
			debug.SetPanicOnFault(true)
			defer func() {
				if r := recover(); r != nil {
					send(chunk{err: fmt.Errorf("reading %s: %v", src.Name(), r)})
				}
			}()
		}
		zero := make([]byte, convertZero)
		var pbuf []byte
		if parent != nil {
			pbuf = make([]byte, convertRead)
		}
		srcSize := min(in.Size(), size)
		err := forEachExtent(in, srcSize, func(off, n int64) error {
			for end := off + n; off < end; {
				m := min(convertRead-off%convertRead, end-off)
				var buf []byte
				select {
				case buf = <-free:
				case <-ctx.Done():
					return ctx.Err()
				}
				p := buf[:m]
				if mapped != nil {
					p = mapped[off : off+m]
				} else if _, err := in.ReadAt(p, off); err != nil && !(errors.Is(err, io.EOF) && off+m == in.Size()) {
					return fmt.Errorf("reading at %d: %w", off, err)
				}
				var q []byte
				if parent != nil {
					q = pbuf[:m]
					if _, err := parent.ReadAt(q, off); err != nil && !errors.Is(err, io.EOF) {
						return fmt.Errorf("reading the parent at %d: %w", off, err)
					}
				}
				c := chunk{buf: buf}
				if mapped != nil {
					c.src = p
				}
				// Split at MiB boundaries; keep runs that must be written.
				for i := int64(0); i < m; {
					j := min(i+convertZero-(off+i)%convertZero, m)
					part := p[i:j]
					skip := bytes.Equal(part, zero[:len(part)])
					if q != nil {
						skip = bytes.Equal(part, q[i:j])
					}
					if !skip {
						if k := len(c.segs) - 1; k >= 0 && c.segs[k].off+int64(len(c.segs[k].b)) == off+i {
							c.segs[k].b = p[c.segs[k].off-off : j]
						} else {
							c.segs = append(c.segs, segment{off + i, part})
						}
					}
					i = j
				}
				if err := send(c); err != nil {
					return err
				}
				progress(m)
				off += m
			}
			return nil
		}, func(n int64) { progress(n) })
		if err == nil && parent != nil && srcSize < size {
			// Past the end of a shorter source the disk reads zeros, which the
			// parent may not.
			err = zeroWhereParentIsNot(parent, srcSize, size, func(off int64, b []byte) error {
				return send(chunk{segs: []segment{{off, b}}})
			})
		}
		if err != nil {
			send(chunk{err: err})
		}
	}()
	var written int64
	for c := range chunks {
		if c.err != nil {
			return 0, c.err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		for _, s := range c.segs {
			var err error
			if mapped != nil && c.buf != nil {
				err = copier.CopyFrom(src, s.off, s.off, int64(len(s.b)))
			} else {
				_, err = out.WriteAt(s.b, s.off)
			}
			if err != nil {
				return 0, fmt.Errorf("writing at %d: %w", s.off, err)
			}
			written += int64(len(s.b))
			wrote(int64(len(s.b)))
		}
		if c.src != nil {
			// Drop the pages from this mapping (not from the page cache), so that
			// the resident size stays bounded on large sources.
			_ = unix.Madvise(c.src, unix.MADV_DONTNEED)
		}
		if c.buf != nil {
			free <- c.buf
		}
	}
	return written, ctx.Err()
}

// fileCopier is a target that takes data with copy_file_range.
type fileCopier interface {
	CopyFrom(src *os.File, srcOff, off, n int64) error
}

// sourceFile returns the file of a raw source, or nil.
func sourceFile(in virtualDisk) *os.File {
	if r, ok := in.(rawDisk); ok {
		return r.File
	}
	return nil
}

// targetCopier returns out as a fileCopier when copy_file_range can move data
// into it: a VHD or VHDX without parent.
func targetCopier(out io.WriterAt, parent *vhd.Disk) fileCopier {
	if d, ok := out.(*vhd.Disk); ok && parent == nil && d.Parent() == nil {
		return d
	}
	return nil
}

// zeroWhereParentIsNot emits zeros for the MiBs of [from, to) where parent has
// data.
func zeroWhereParentIsNot(parent *vhd.Disk, from, to int64, emit func(int64, []byte) error) error {
	buf := make([]byte, convertZero)
	zero := make([]byte, convertZero)
	for off := from; off < to; {
		n := min(convertZero-off%convertZero, to-off)
		if _, err := parent.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if err := emit(off, zero[:n]); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// forEachExtent calls data for the ranges of [0, size) that may hold data and hole
// for the lengths of holes. The holes of a raw file are found with SEEK_DATA and
// SEEK_HOLE; other disks are one extent.
func forEachExtent(in virtualDisk, size int64, data func(off, n int64) error, hole func(n int64)) error {
	r, ok := in.(rawDisk)
	if !ok {
		return data(0, size)
	}
	fd := int(r.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			hole(size - off)
			return nil
		}
		if err != nil {
			// No SEEK_DATA here: read everything.
			return data(off, size-off)
		}
		start = min(start, size)
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		end = min(end, size)
		hole(start - off)
		if end > start {
			if err := data(start, end-start); err != nil {
				return err
			}
		}
		off = end
	}
	return nil
}

// createTarget creates the new disk at path for a source of srcSize bytes and
// returns it with the open parent of a differencing target and the virtual size.
func createTarget(path string, srcSize int64, o convertOptions) (out diskWriter, parent *vhd.Disk, size int64, err error) {
	sector := int64(vhd.SectorSize)
	if o.sectorSize != 0 {
		sector = int64(o.sectorSize)
	}
	if o.parent != "" {
		p, err := vhd.Open(o.parent, true)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("opening parent: %w", err)
		}
		defer func() {
			if out == nil {
				p.Close()
			}
		}()
		parent, sector = p, int64(p.LogicalSectorSize())
	}
	size = srcSize
	if o.target != targetRaw {
		size = (size + sector - 1) / sector * sector
	}
	if parent != nil && parent.Size() != size {
		return nil, nil, 0, fmt.Errorf("%w: the parent %s has %d bytes, the source %d", vhd.ErrInvalidOptions, o.parent, parent.Size(), size)
	}
	switch o.target {
	case targetRaw:
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, nil, 0, err
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(path)
			return nil, nil, 0, err
		}
		return rawWriter{f}, nil, size, nil
	case targetVHDFixed, targetVHDDynamic, targetVHDDifferencing:
		t := map[string]vhd.DiskType{targetVHDFixed: vhd.Fixed, targetVHDDynamic: vhd.Dynamic, targetVHDDifferencing: vhd.Differencing}[o.target]
		d, err := vhd.Create(path, vhd.CreateOptions{Type: t, Size: size, BlockSize: uint32(o.blockSize), Parent: o.parent})
		if err != nil {
			return nil, nil, 0, err
		}
		return d, parent, size, nil
	default:
		err := vhd.CreateVHDX(path, vhd.VHDXCreateOptions{Size: size, Fixed: o.target == targetVHDXFixed, Parent: o.parent,
			BlockSize: uint32(o.blockSize), LogicalSectorSize: uint32(o.sectorSize)})
		if err != nil {
			return nil, nil, 0, err
		}
		d, err := vhd.Open(path, false)
		if err != nil {
			os.Remove(path)
			return nil, nil, 0, err
		}
		// The file is linked into place only after Close has synced it.
		d.DeferSync()
		return d, parent, size, nil
	}
}

// convertWriteback is how many bytes are written between two requests to start
// writing the output back to disk.
const convertWriteback = 32 << 20

// writeback starts the kernel writing a file's dirty pages back while the copy
// goes on, so that the final sync has little left to do: without it nothing is
// written before the dirty-page threshold (10% of memory by default) is reached,
// and the copy and the disk writes take turns instead of overlapping.
type writeback struct {
	f       *os.File
	pending int64
	req     chan struct{}
	done    chan struct{}
}

func startWriteback(path string) (*writeback, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	w := &writeback{f: f, req: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for range w.req {
			// Only a hint: an error (no support for it here) changes nothing.
			_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		}
	}()
	return w, nil
}

// kick counts n written bytes and asks for writeback every convertWriteback.
func (w *writeback) kick(n int64) {
	w.pending += n
	if w.pending < convertWriteback {
		return
	}
	w.pending = 0
	select {
	case w.req <- struct{}{}:
	default: // one is under way
	}
}

func (w *writeback) stop() {
	close(w.req)
	<-w.done
	w.f.Close()
}

// vhdConvertResult is the -o json document of vhd convert.
type vhdConvertResult struct {
	Disk
	Type         string `json:"type"`
	Source       string `json:"source"`
	SourceFormat string `json:"sourceFormat"`
	Parent       string `json:"parent,omitempty"`
	BytesWritten int64  `json:"bytesWritten"`
	Duration
}

// targetFormat and targetType split a --to value: "vhdx-dynamic" is format vhdx,
// type dynamic; "raw" is format raw, type fixed.
func targetFormat(t string) string { f, _, _ := strings.Cut(t, "-"); return f }

func targetType(t string) string {
	if _, typ, ok := strings.Cut(t, "-"); ok {
		return typ
	}
	return "fixed"
}
