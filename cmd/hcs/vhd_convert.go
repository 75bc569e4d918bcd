package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// Targets of vhd convert.
const (
	targetRaw         = "raw"
	targetVHDFixed    = "vhd-fixed"
	targetVHDDynamic  = "vhd-dynamic"
	targetVHDXDynamic = "vhdx-dynamic"
)

// convertChunk is the copy unit; the larger block size of a dynamic VHD replaces it.
const convertChunk = 1 << 20

func (a *app) newVHDConvertCommand() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "convert [flags] SRC DST",
		Short: "Convert between raw images, VHD and VHDX",
		Long: `Copy the virtual disk of SRC into a new disk DST of the format given by --to:
raw, vhd-fixed, vhd-dynamic or vhdx-dynamic. SRC is any disk that hcs vhd opens
(VHD of any type, fixed or dynamic VHDX), or a raw image: a regular file that is
neither VHD nor VHDX. Without --to a raw SRC becomes vhd-dynamic and a disk
becomes raw.

The disk is copied in chunks of 1 MiB, or of the block size of a dynamic VHD
target when that is larger. Chunks of zeros are not written, so every target is sparse: dynamic
disks leave such blocks unallocated, raw images and fixed VHDs keep holes. A raw
SRC whose size is not a multiple of 512 is padded with zeros.

DST must not exist (exit code 4). The copy is written to DST.tmp-XXXXXXXX next
to it and linked into place only when complete, so a failure or an
interruption leaves nothing behind.`,
		Args: cobra.ExactArgs(2),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			switch to {
			case "", targetRaw, targetVHDFixed, targetVHDDynamic, targetVHDXDynamic:
				return nil
			}
			return usageErrorf("invalid --to %q: want raw, vhd-fixed, vhd-dynamic or vhdx-dynamic", to)
		},
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			if err := existing(dst); err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			in, format, err := openDisk(src, true)
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			defer in.Close()
			target := to
			if target == "" {
				target = targetRaw
				if format == formatRaw {
					target = targetVHDDynamic
				}
			}
			start := time.Now()
			size, written, err := a.convert(cmd, in, dst, target)
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			elapsed := time.Since(start)
			return a.result(fmt.Sprintf("converted %s (%s) to %s (%s): %d bytes, %d written in %s", src, format, dst, target, size, written, seconds(elapsed)),
				map[string]any{"source": src, "sourceFormat": format, "file": dst, "target": target, "virtualSize": size, "bytesWritten": written, "seconds": elapsed.Seconds()})
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "target `FORMAT`: raw, vhd-fixed, vhd-dynamic or vhdx-dynamic")
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
func (a *app) convert(cmd *cobra.Command, in virtualDisk, dst, target string) (size, written int64, err error) {
	size = in.Size()
	if target != targetRaw {
		size = (size + vhd.SectorSize - 1) / vhd.SectorSize * vhd.SectorSize
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return 0, 0, err
	}
	tmp := dst + ".tmp-" + hex.EncodeToString(suffix[:])
	out, chunk, err := createTarget(tmp, target, size)
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
	a.log.Debug("converting", logKeyFile, dst, "target", target, logKeyBytes, size, "chunk", chunk)
	bar := a.progress("convert", size)
	defer bar.Stop()
	buf := make([]byte, chunk)
	srcSize := in.Size()
	for off := int64(0); off < size; off += chunk {
		if err := cmd.Context().Err(); err != nil {
			return 0, 0, err
		}
		n := min(chunk, size-off)
		p := buf[:n]
		clear(p)
		if m := min(n, srcSize-off); m > 0 {
			if _, err := in.ReadAt(p[:m], off); err != nil && !(errors.Is(err, io.EOF) && off+m == srcSize) {
				return 0, 0, fmt.Errorf("reading at %d: %w", off, err)
			}
		}
		if !allZero(p) {
			if _, err := out.WriteAt(p, off); err != nil {
				return 0, 0, fmt.Errorf("writing at %d: %w", off, err)
			}
			written += n
		}
		bar.Add(n)
	}
	closed = true
	if err := out.Close(); err != nil {
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

// createTarget creates the new disk at path and returns it with the copy chunk size.
func createTarget(path, target string, size int64) (diskWriter, int64, error) {
	switch target {
	case targetRaw:
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, 0, err
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(path)
			return nil, 0, err
		}
		return rawWriter{f}, convertChunk, nil
	case targetVHDFixed, targetVHDDynamic:
		t := vhd.Fixed
		if target == targetVHDDynamic {
			t = vhd.Dynamic
		}
		d, err := vhd.Create(path, vhd.CreateOptions{Type: t, Size: size})
		if err != nil {
			return nil, 0, err
		}
		chunk := int64(convertChunk)
		if h := d.Header(); h != nil {
			chunk = max(chunk, int64(h.BlockSize))
		}
		return d, chunk, nil
	case targetVHDXDynamic:
		if err := vhd.CreateVHDX(path, vhd.VHDXCreateOptions{Size: size}); err != nil {
			return nil, 0, err
		}
		d, err := vhd.Open(path, false)
		if err != nil {
			os.Remove(path)
			return nil, 0, err
		}
		// Blocks of a VHDX are large (32 MiB) and the rest of a new block reads as
		// zeros, so 1 MiB chunks keep zero runs inside a block unwritten.
		return d, convertChunk, nil
	}
	return nil, 0, usageErrorf("invalid --to %q", target)
}

// allZero reports whether p holds only zero bytes.
func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
