//go:build !linux

package layers

import "context"

// ReleaseCimFSHostLayers returns an error matching errors.ErrUnsupported.
func ReleaseCimFSHostLayers(ctx context.Context, scratchLayerFolderPath, containerID string) error {
	return unsupported("release CIM layers")
}
