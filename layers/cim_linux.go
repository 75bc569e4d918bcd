package layers

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/wclayer/cim"
)

// ReleaseCimFSHostLayers releases what a process-isolated container built on CIM
// layers holds on the host, as hcsshim's does: the union at the scratch folder's
// mount path (scratchLayerFolderPath/mount, where MountWCOWLayers mounts it
// without a volumeMountPath), taken down with UnmountAll, then the FUSE views of
// the CIM layers MountWCOWLayers mounted for containerID (host.ReleaseCIMs) and
// the CIM mounted with wclayer/cim's MountCimLayer for it (CleanupContainerMounts);
// both also clear what a crashed process left. Either may already be gone. The scratch disk stays
// attached, as with hcsshim, where deactivating the scratch layer detaches it.
func ReleaseCimFSHostLayers(ctx context.Context, scratchLayerFolderPath, containerID string) error {
	union := filepath.Join(scratchLayerFolderPath, WCOWMountDir)
	if _, err := UnmountAll(ctx, union, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := host.ReleaseCIMs(ctx, containerID); err != nil {
		return &Error{Op: "release CIM layers", Path: scratchLayerFolderPath, Err: err}
	}
	if err := cim.CleanupContainerMounts(containerID); err != nil {
		return &Error{Op: "release CIM layers", Path: scratchLayerFolderPath, Err: err}
	}
	return nil
}
