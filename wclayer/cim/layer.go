// Package cim stores Windows container image layers as CimFS images, with the
// names and layout of hcsshim's internal/wclayer/cim, built and read in pure Go on
// Linux (package pkg/cimfs).
//
// # Layout
//
// A CIM layer at layerPath (a folder such as <snapshots>/<id>) consists of
//
//	<layerPath>/../cim-layers/<id>.cim                 the image
//	<layerPath>/../cim-layers/region_<guid>_<n>        its region files
//	<layerPath>/../cim-layers/objectid_<guid>_<n>      its object ID files
//	<layerPath>/                                       the layer folder (kept empty here)
//
// All layers of a chain share the cim-layers folder: a layer with parents is a
// fork of its immediate parent's image, so it references the parents' region
// files instead of copying them, and shows the whole merged tree.
//
// # Writing
//
// CimLayerWriter takes what hcsshim's takes: per file the FILE_BASIC_INFO, the
// size, the security descriptor, the extended attributes and the reparse buffer,
// then the raw data through Write (hcsshim's comment speaks of a backup stream,
// but its writer passes the bytes straight to CimWriteStream, as this one does);
// alternate streams, hard links and removals. The image becomes visible under its
// name only when Close succeeds: region files are staged in a hidden folder and
// renamed, the .cim file last. A failed or killed writer leaves no image; the
// staging folders of dead writers are removed by the next NewCimLayerWriter in the
// same folder.
//
// hcsshim's writer also post-processes registry hives of base layers and the
// UtilityVM's boot files, with Windows registry APIs; this package stores the
// layer's files as they are (see README's limits).
package cim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// CimLayersDir is the name of the folder, beside the layer folders, that holds the
// CIMs of all layers.
const CimLayersDir = "cim-layers"

// GetCimDirFromLayer returns the folder holding the CIMs: cim-layers beside the
// layer folder.
func GetCimDirFromLayer(layerPath string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(layerPath)), CimLayersDir)
}

// GetCimNameFromLayer returns the file name of a layer's image: <layer id>.cim.
func GetCimNameFromLayer(layerPath string) string {
	return filepath.Base(filepath.Clean(layerPath)) + ".cim"
}

// GetCimPathFromLayer returns the path of a layer's .cim file.
func GetCimPathFromLayer(layerPath string) string {
	return filepath.Join(GetCimDirFromLayer(layerPath), GetCimNameFromLayer(layerPath))
}

// IsCimLayer reports whether the layer at layerPath is stored as a CIM.
func IsCimLayer(layerPath string) bool {
	st, err := os.Stat(GetCimPathFromLayer(layerPath))
	return err == nil && st.Mode().IsRegular()
}

// DestroyCimLayer removes a CIM layer: its image and own region and object ID files,
// then the layer folder. If layerPath has no CIM, nothing is done (containerd calls it
// on snapshot folders that are not layers). CIM layers forked from this one become
// unreadable, as with hcsshim.
func DestroyCimLayer(ctx context.Context, layerPath string) error {
	cimPath := GetCimPathFromLayer(layerPath)
	if _, err := os.Stat(cimPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := cimfs.Destroy(cimPath); err != nil {
		return err
	}
	return os.RemoveAll(layerPath)
}

// OpenLayer opens the image of the CIM layer at layerPath for reading.
func OpenLayer(layerPath string) (*cimfs.Image, error) {
	return cimfs.Open(GetCimPathFromLayer(layerPath))
}

// parentCim checks that the immediate parent is a CIM layer stored in the same
// cim-layers folder and returns its image name.
func parentCim(layerPath string, parentLayerPaths []string) (string, error) {
	if len(parentLayerPaths) == 0 {
		return "", nil
	}
	p := parentLayerPaths[0]
	for _, pp := range parentLayerPaths {
		if _, err := os.Stat(GetCimPathFromLayer(pp)); errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(pp); errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("cim: parent layer %s: %w", pp, winlayer.ErrParentNotFound)
			}
		}
	}
	if GetCimDirFromLayer(p) != GetCimDirFromLayer(layerPath) {
		return "", fmt.Errorf("cim: parent layer %s keeps its CIM in %s, not in %s: forks need one folder", p, GetCimDirFromLayer(p), GetCimDirFromLayer(layerPath))
	}
	if !IsCimLayer(p) {
		return "", fmt.Errorf("cim: parent layer %s: %w", p, ErrNotCimLayer)
	}
	return GetCimNameFromLayer(p), nil
}

// ErrNotCimLayer: the layer has no CIM.
var ErrNotCimLayer = errors.New("cim: not a CIM layer")

// toSlash turns a Windows layer path into the slash form of winlayer entries.
func toSlash(name string) string { return strings.ReplaceAll(name, `\`, "/") }
