package wclayer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/atomicfile"
	"github.com/hostcompute/hostcompute/pkg/vhd"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// DefaultScratchSize is the virtual size of the disk CreateScratchLayer makes
// when no size is given: 20 GiB, sparse, as the Host Compute Service's default.
const DefaultScratchSize = 20 << 30

// Errors of the activation functions, wrapped with the layer's path.
var (
	// ErrNotScratch means the layer has no scratch disk (sandbox.vhdx): it is a
	// read-only layer, which cannot be prepared.
	ErrNotScratch = errors.New("wclayer: not a read-write (scratch) layer")
	// ErrNotActivated means the layer must be activated first (PrepareLayer),
	// or is not active (DeactivateLayer).
	ErrNotActivated = host.ErrNotActivated
	// ErrNotPrepared means UnprepareLayer found the layer not prepared.
	ErrNotPrepared = host.ErrNotPrepared
	// ErrStillPrepared means DeactivateLayer was asked to end the last
	// activation of a layer still prepared: call UnprepareLayer first.
	ErrStillPrepared = host.ErrStillPrepared
	// ErrParentsDiffer means PrepareLayer of a prepared layer named other parents.
	ErrParentsDiffer = host.ErrParentsDiffer
)

// ScratchOption changes what CreateScratchLayerWithOptions makes.
type ScratchOption func(*scratchOptions)

type scratchOptions struct {
	size int64
	fsys host.Filesystem
}

// WithScratchSize sets the virtual size of the scratch disk in bytes (rounded
// up to a whole MiB); the disk is sparse, so the size costs nothing until
// written.
func WithScratchSize(size int64) ScratchOption {
	return func(o *scratchOptions) { o.size = size }
}

// WithNTFS formats the scratch disk with NTFS (mkntfs) instead of ext4.
func WithNTFS() ScratchOption {
	return func(o *scratchOptions) { o.fsys = host.NTFS }
}

// CreateScratchLayer creates and populates a new read-write layer for use by a
// container at path: a layer folder whose layerchain.json names
// parentLayerPaths (the full chain, immediate parent first, down to the base)
// and whose sandbox.vhdx is a dynamic VHDX of DefaultScratchSize bytes,
// formatted ext4. The folder is built under a hidden name beside path and
// renamed into place complete; a path that exists gives an error matching
// fs.ErrExist.
func CreateScratchLayer(ctx context.Context, path string, parentLayerPaths []string) error {
	return CreateScratchLayerWithOptions(ctx, path, parentLayerPaths)
}

// CreateScratchLayerWithOptions is CreateScratchLayer with a choice of disk
// size and file system.
func CreateScratchLayerWithOptions(ctx context.Context, path string, parentLayerPaths []string, opts ...ScratchOption) (err error) {
	fail := func(err error) error { return fmt.Errorf("wclayer: creating scratch layer %s: %w", path, err) }
	o, err := newScratchOptions(opts)
	if err != nil {
		return fail(err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fail(err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return fail(fmt.Errorf("%w: %s", winlayer.ErrLayerExists, abs))
	}
	for _, p := range parentLayerPaths {
		if ok, err := winlayer.Exists(p); err != nil {
			return fail(err)
		} else if !ok {
			return fail(fmt.Errorf("parent %s: %w", p, winlayer.ErrNotLayer))
		}
	}
	// Remains of a crashed creation of the same layer go first.
	prefix := "." + filepath.Base(abs) + ".creating-"
	if old, _ := filepath.Glob(filepath.Join(filepath.Dir(abs), prefix+"*")); len(old) > 0 {
		for _, d := range old {
			os.RemoveAll(d)
		}
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	stage := filepath.Join(filepath.Dir(abs), prefix+hex.EncodeToString(rnd[:]))
	defer func() {
		if err != nil {
			os.RemoveAll(stage)
		}
	}()
	if err := winlayer.Create(ctx, stage, parentLayerPaths); err != nil {
		return fail(err)
	}
	if err := makeScratchDisk(ctx, filepath.Join(stage, ScratchDisk), o); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(stage); err != nil {
		return fail(err)
	}
	if err := os.Rename(stage, abs); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(abs)); err != nil {
		return fail(err)
	}
	return nil
}

// CreateScratchDisk writes a new scratch disk at disk: a dynamic VHDX with
// 1 MiB blocks, DefaultScratchSize bytes unless WithScratchSize says
// otherwise, formatted ext4 (or NTFS with WithNTFS). It is made under a hidden
// name beside disk and renamed into place complete; an existing disk gives an
// error matching fs.ErrExist.
func CreateScratchDisk(ctx context.Context, disk string, opts ...ScratchOption) (err error) {
	o, err := newScratchOptions(opts)
	if err != nil {
		return fmt.Errorf("wclayer: creating scratch disk %s: %w", disk, err)
	}
	if err := makeScratchDisk(ctx, disk, o); err != nil {
		return fmt.Errorf("wclayer: creating scratch disk %s: %w", disk, err)
	}
	return nil
}

func newScratchOptions(opts []ScratchOption) (scratchOptions, error) {
	o := scratchOptions{size: DefaultScratchSize, fsys: host.Ext4}
	for _, f := range opts {
		f(&o)
	}
	const mib = 1 << 20
	if o.size <= 0 || o.size > 64<<40 {
		return o, fmt.Errorf("scratch size %d out of range", o.size)
	}
	o.size = (o.size + mib - 1) / mib * mib
	return o, nil
}

// makeScratchDisk writes a formatted dynamic VHDX at disk, staged.
func makeScratchDisk(ctx context.Context, disk string, o scratchOptions) (err error) {
	if _, err := os.Lstat(disk); err == nil {
		return fmt.Errorf("%s: %w", disk, fs.ErrExist)
	}
	tmp := filepath.Join(filepath.Dir(disk), "."+filepath.Base(disk)+".tmp")
	os.Remove(tmp) // a crashed creation's
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := vhd.CreateVHDX(tmp, vhd.VHDXCreateOptions{Size: o.size, BlockSize: 1 << 20}); err != nil {
		return err
	}
	if err := formatDisk(ctx, tmp, o.fsys); err != nil {
		return err
	}
	return atomicfile.Rename(tmp, disk)
}

// formatDisk attaches disk for the time of the call and formats it.
func formatDisk(ctx context.Context, disk string, fsys host.Filesystem) (err error) {
	a, err := host.AttachDisk(ctx, disk, host.AttachOptions{})
	if err != nil {
		return err
	}
	defer func() {
		if derr := host.DetachDisk(context.Background(), a.Device); derr != nil && err == nil {
			err = derr
		}
	}()
	return host.FormatDevice(ctx, a.Device, host.FormatOptions{Filesystem: fsys, AssumeZeroed: true})
}

// scratchDisk returns the scratch disk of the layer folder path, or "" for a
// read-only layer. A missing folder is an error matching fs.ErrNotExist.
func scratchDisk(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%w: %s is not a folder", winlayer.ErrNotLayer, path)
	}
	disk := filepath.Join(path, ScratchDisk)
	if _, err := os.Stat(disk); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	return disk, nil
}

// ActivateLayer mounts the file system of the layer at path. For a read-write
// layer (one with sandbox.vhdx) the disk is attached (a loop device; VHDX
// through internal/attach's raw view) and its file system mounted at
// /run/hostcompute/layers/<GUID>/volume, where GUID is NameToGuid of the
// layer's absolute path with symbolic links resolved (the directory is
// layers/ under $HOSTCOMPUTE_STATE_DIR when set); GetLayerMountPath returns it. For a read-only layer it does nothing, as
// on Windows. Activations are counted, across processes: each must be ended
// by a DeactivateLayer.
func ActivateLayer(ctx context.Context, path string) error {
	disk, err := scratchDisk(path)
	if err != nil || disk == "" {
		if err != nil {
			return fmt.Errorf("wclayer: activating layer %s: %w", path, err)
		}
		return nil
	}
	return host.Activate(ctx, path, disk)
}

// DeactivateLayer ends one activation of the layer at path; the last one
// unmounts its volume and detaches its disk. The last activation of a layer
// still prepared is not ended: the error matches ErrStillPrepared (call
// UnprepareLayer first). A read-only layer needs nothing.
func DeactivateLayer(ctx context.Context, path string) error {
	disk, err := scratchDisk(path)
	if err != nil || disk == "" {
		if err != nil {
			return fmt.Errorf("wclayer: deactivating layer %s: %w", path, err)
		}
		return nil
	}
	return host.Deactivate(ctx, path)
}

// PrepareLayer enables the union filter on the activated read-write layer at
// path: an overlayfs union of the parents' Files/ folders (immediate parent
// first; each parent's deletions, its tombstones.txt, hide the files of the
// parents below it) with the layer's volume's Files/ as the writable layer,
// mounted at /run/hostcompute/layers/<GUID>/union, which GetLayerMountPath
// then returns. Preparations are counted like activations; preparing again
// with other parents gives ErrParentsDiffer. A layer not activated gives
// ErrNotActivated, a read-only layer ErrNotScratch, a missing parent an error
// naming it that matches fs.ErrNotExist.
func PrepareLayer(ctx context.Context, path string, parentLayerPaths []string) error {
	disk, err := scratchDisk(path)
	if err == nil && disk == "" {
		err = ErrNotScratch
	}
	if err != nil {
		return fmt.Errorf("wclayer: preparing layer %s: %w", path, err)
	}
	return host.Prepare(ctx, path, parentLayerPaths)
}

// UnprepareLayer ends one PrepareLayer of the layer at path; the last one
// unmounts the union (a union in use gives an error and stays).
func UnprepareLayer(ctx context.Context, path string) error {
	disk, err := scratchDisk(path)
	if err == nil && disk == "" {
		err = ErrNotScratch
	}
	if err != nil {
		return fmt.Errorf("wclayer: unpreparing layer %s: %w", path, err)
	}
	return host.Unprepare(ctx, path)
}

// GetLayerMountPath returns where the layer at path can be used: its union
// when prepared, its volume when only activated, else the layer folder itself
// (a read-only layer, or a read-write one not activated).
func GetLayerMountPath(ctx context.Context, path string) (string, error) {
	disk, err := scratchDisk(path)
	if err != nil {
		return "", fmt.Errorf("wclayer: layer mount path %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if disk == "" {
		return abs, nil
	}
	p, err := host.MountPath(ctx, abs)
	if err != nil || p != "" {
		return p, err
	}
	return abs, nil
}
