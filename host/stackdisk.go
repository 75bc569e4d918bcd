package host

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// footerSize is the size of a VHD footer.
const footerSize = 512

// diskInfo says how a layer or scratch disk file can be attached.
type diskInfo struct {
	format    string // "fixed VHD" or "raw"
	sizeLimit int64  // device size: the data before the footer; 0 for the whole file
}

// inspectDisk tells a fixed VHD (attachable with the footer kept out of the device)
// and a raw image (attachable whole) from the formats a loop device cannot present:
// VHDX, dynamic and differencing VHD. Those give ErrUnsupportedDisk.
func inspectDisk(path string) (diskInfo, error) {
	fail := func(err error) (diskInfo, error) {
		return diskInfo{}, &Error{Op: "inspect disk", Path: path, Err: err}
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("%w: not a regular file (%s)", ErrInvalidArgument, st.Mode().Type()))
	}
	size := st.Size()
	var head [8]byte
	if _, err := f.ReadAt(head[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	unsupported := func(format string) (diskInfo, error) {
		return fail(fmt.Errorf("%w: %s cannot be attached through a loop device as it is; convert it to a fixed VHD (hcs vhd convert) or a raw image", ErrUnsupportedDisk, format))
	}
	if string(head[:]) == "vhdxfile" {
		return unsupported("VHDX")
	}
	if size >= footerSize {
		tail := make([]byte, footerSize)
		if _, err := f.ReadAt(tail, size-footerSize); err != nil {
			return fail(err)
		}
		if bytes.HasPrefix(tail, []byte("conectix")) {
			ft, err := vhd.ParseFooterAt(tail, size-footerSize)
			if err != nil {
				return fail(err)
			}
			if ft.DiskType != vhd.DiskTypeFixed {
				return unsupported(ft.DiskType.String() + " VHD")
			}
			if ft.CurrentSize > uint64(size-footerSize) {
				return fail(fmt.Errorf("%w: the VHD footer at byte %d gives a disk size of %d bytes, but only %d precede it", vhd.ErrInvalidFormat, size-footerSize, ft.CurrentSize, size-footerSize))
			}
			return diskInfo{format: "fixed VHD", sizeLimit: int64(ft.CurrentSize)}, nil
		}
	}
	if string(head[:]) == "conectix" {
		return unsupported("dynamic VHD (footer copy at byte 0)")
	}
	return diskInfo{format: "raw"}, nil
}
