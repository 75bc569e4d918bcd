package cim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/guid"
)

// DefaultMountDir is the folder that holds one mount point per mounted CIM.
//
// hcsshim mounts a CIM as a volume whose GUID is a version-5 GUID of the
// container ID (VolumeGUID), so that whoever knows the container ID finds the
// mount again, even after the process that made it crashed. On Linux the volume
// is a read-only FUSE mount (package internal/cimview) served by a helper
// process that outlives the caller, at MountDir()/<volume GUID>, for example
// /run/hostcompute/cim/0b6e…: cim/ under the host engine's state root, which
// $HOSTCOMPUTE_STATE_DIR moves. The mount functions return and take that directory where
// hcsshim uses the volume path \\?\Volume{<GUID>}\. One container ID has one
// CIM mount at a time, as with hcsshim.
const DefaultMountDir = "/run/hostcompute/cim"

// MountDir returns the folder holding the CIM mount points.
func MountDir() string { return host.CIMMountDir() }

// cimMountNamespace is hcsshim's namespace of CIM volume GUIDs
// (6827367b-c388-4e9b-961c-6d2c936c0000).
var cimMountNamespace = guid.GUID{Data1: 0x6827367b, Data2: 0xc388, Data3: 0x4e9b, Data4: [8]byte{0x96, 0x1c, 0x6d, 0x2c, 0x93, 0x6c}}

// VolumeGUID returns the GUID of the volume a container's CIM is mounted as:
// the version-5 GUID of containerID in hcsshim's namespace.
func VolumeGUID(containerID string) guid.GUID {
	return guid.NewV5(cimMountNamespace, []byte(containerID))
}

// mountID is the fusefs mount ID of a container's CIM mount.
func mountID(containerID string) string { return "cim-" + VolumeGUID(containerID).String() }

// mountPoint is where a container's CIM is mounted.
func mountPoint(containerID string) string {
	return filepath.Join(MountDir(), VolumeGUID(containerID).String())
}

// Errors of the mount functions.
var (
	// ErrNotMounted: the container has no CIM mounted (or another CIM than the
	// one named). Matches fs.ErrNotExist.
	ErrNotMounted = fmt.Errorf("cim: not mounted: %w", os.ErrNotExist)
	// ErrMountedOther: the container already has another CIM mounted.
	// Matches fs.ErrExist.
	ErrMountedOther = fmt.Errorf("cim: the container has another CIM mounted: %w", os.ErrExist)
)

// MountError is a failed mount operation of a container's CIM.
type MountError struct {
	Op          string // "mount", "unmount", "get mount path", "cleanup"
	CimPath     string
	ContainerID string
	Err         error
}

func (e *MountError) Error() string {
	s := "cim: " + e.Op
	if e.CimPath != "" {
		s += " " + e.CimPath
	}
	return s + " for container " + e.ContainerID + ": " + e.Err.Error()
}

func (e *MountError) Unwrap() error { return e.Err }

// sameFile reports whether the .cim paths a and b name the same file.
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

var errUnsupported = fmt.Errorf("cim: mounting CIMs needs Linux FUSE: %w", errors.ErrUnsupported)
