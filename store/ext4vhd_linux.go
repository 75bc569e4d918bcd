package store

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/ext4"
	"github.com/hostcompute/hostcompute/pkg/ocilayer"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// ext4VHDFile is the image of an ext4-vhd layer, in its fs/ directory.
const ext4VHDFile = "layer.vhd"

// diskRecordPrefix marks a mount record of a disk attached and mounted through
// the host engine (by Export of an ext4-vhd layer): "disk:<image path>".
const diskRecordPrefix = "disk:"

// buildExt4VHD writes the OCI Linux layer r as dir/layer.vhd: an ext4 image
// (pkg/ext4, whiteouts as overlay whiteouts, so that the image can be a lower
// layer of a union) with a fixed VHD footer.
func buildExt4VHD(ctx context.Context, dir string, r io.Reader) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, ext4VHDFile))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	res, err := ext4.Build(ctx, f, io.TeeReader(r, h), ext4.WithConvertWhiteouts())
	if err != nil {
		return err
	}
	// The footer's unique ID comes from the content, so the same layer gives the
	// same bytes.
	var id [16]byte
	copy(id[:], h.Sum(nil))
	if err := vhd.AppendFixedFooter(f, res.Size, vhd.NewFixedFooter(res.Size, vhd.Epoch, id)); err != nil {
		return err
	}
	return f.Close()
}

// exportExt4 writes the content of an ext4-vhd layer as an OCI layer tar: the
// image is attached read-only and mounted through the host engine, and the
// mounted tree (an upper directory, whiteouts included) is written by
// ocilayer.Diff. The attachment is recorded in v1/mounts first, so that a
// process killed with it attached leaves a record for reconcile.
func (s *Store) exportExt4(ctx context.Context, w io.Writer, r *record) error {
	disk := filepath.Join(s.layerDir(r.ID), "fs", ext4VHDFile)
	// One export of an image at a time: a second MountDisk would share the
	// first one's mount, which the first one's undo takes down.
	img, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer img.Close()
	if err := unix.Flock(int(img.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	rec := diskRecordPrefix + disk
	if err := s.update(ctx, func(tx *txn) error { return addMountRecord(tx, r.Key, rec) }, nil); err != nil {
		return err
	}
	defer func() {
		err := s.update(context.WithoutCancel(ctx), func(tx *txn) error { return deleteMountRecord(tx, rec) }, nil)
		if err != nil {
			s.log.Warn("deleting a mount record", "path", rec, "error", err)
		}
	}()
	mnt, undo, err := host.MountDisk(ctx, disk, true)
	if err != nil {
		return err
	}
	err = diffWithoutLostFound(ctx, w, mnt)
	if uerr := undo.Release(context.WithoutCancel(ctx)); err == nil {
		err = uerr
	}
	return err
}

// releaseDisk unmounts every mount of the disk file's attachment and ends the
// attachment, if there is one.
func releaseDisk(ctx context.Context, disk string) error {
	a, err := host.GetDisk(disk)
	if err != nil {
		if errors.Is(err, host.ErrDiskNotAttached) || errors.Is(err, os.ErrNotExist) {
			return host.CleanupDisks(ctx)
		}
		return err
	}
	mps, err := host.DiskMountPoints(a)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := host.Unmount(mp); err != nil {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	if err := host.DetachDisk(ctx, disk); err != nil && !errors.Is(err, host.ErrDiskNotAttached) {
		return err
	}
	return host.CleanupDisks(ctx)
}

// diffWithoutLostFound writes ocilayer.Diff of an ext4 image's root, leaving out
// an empty lost+found/ at the root: mke2fs's convention, which pkg/ext4 follows,
// not part of the layer.
func diffWithoutLostFound(ctx context.Context, w io.Writer, root string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ocilayer.Diff(ctx, pw, root)) }()
	defer pr.Close()
	tr := tar.NewReader(pr)
	tw := tar.NewWriter(w)
	var held *tar.Header // lost+found/, written only if something is below it
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if held != nil {
			if strings.HasPrefix(h.Name, held.Name) {
				if err := tw.WriteHeader(held); err != nil {
					return err
				}
			}
			held = nil
		}
		if h.Name == "lost+found/" && h.Typeflag == tar.TypeDir {
			held = h
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	return tw.Close()
}
