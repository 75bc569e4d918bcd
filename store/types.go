package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Kind is the kind of a layer, with the values of containerd's snapshots.Kind.
type Kind uint8

// Kinds of layers.
const (
	KindUnknown   Kind = iota
	KindView           // a read-only view over a parent, made by View; never a parent
	KindActive         // a writable layer made by Prepare; never a parent
	KindCommitted      // a read-only layer made by Commit or Import; can be a parent
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "view"
	case KindActive:
		return "active"
	case KindCommitted:
		return "committed"
	}
	return "unknown"
}

// ParseKind parses "view", "active" or "committed" (any case).
func ParseKind(s string) Kind {
	switch strings.ToLower(s) {
	case "view":
		return KindView
	case "active":
		return KindActive
	case "committed":
		return KindCommitted
	}
	return KindUnknown
}

// MarshalJSON writes the kind as its name.
func (k Kind) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// UnmarshalJSON reads a kind name.
func (k *Kind) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*k = ParseKind(s)
	return nil
}

// Format is how a layer's content is kept on disk.
type Format string

// Layer formats.
const (
	// FormatLinuxDir is a directory tree in overlayfs's upper-directory form
	// (whiteouts are 0/0 character devices, opaque directories carry
	// trusted.overlay.opaque), the form containerd's overlay snapshotter keeps.
	FormatLinuxDir Format = "linux-dir"
	// FormatWindowsFolder is a Windows layer folder (Files/, Hives/, hcsmeta/,
	// tombstones.txt, layerchain.json), as pkg/winlayer writes it.
	FormatWindowsFolder Format = "windows-folder"
	// FormatCIM is a CimFS layer (cim-layers/<id>.cim and its regions).
	FormatCIM Format = "cim"
	// FormatExt4VHD is an ext4 image with a VHD footer (layer.vhd), as
	// pkg/ext4 builds it.
	FormatExt4VHD Format = "ext4-vhd"
	// FormatScratchDisk is a writable layer on a sparse disk (sandbox.vhdx).
	FormatScratchDisk Format = "scratch-disk"
)

// Valid says whether f is one of the formats above.
func (f Format) Valid() bool {
	switch f {
	case FormatLinuxDir, FormatWindowsFolder, FormatCIM, FormatExt4VHD, FormatScratchDisk:
		return true
	}
	return false
}

// Info describes a layer. Key, Parent, Kind, Format, the digests and Created
// never change after the layer is made; Labels change through Update.
type Info struct {
	Key    string            `json:"key"`
	Parent string            `json:"parent,omitempty"`
	Kind   Kind              `json:"kind"`
	Format Format            `json:"format"`
	Labels map[string]string `json:"labels,omitempty"`

	// Size and Inodes are the layer's own usage (not its parents'), measured
	// when it was committed or imported; zero for active layers and views,
	// whose usage Usage measures on demand.
	Size   int64 `json:"size"`
	Inodes int64 `json:"inodes"`

	// DiffID is the digest of the layer's uncompressed tar, and ChainID that
	// of the chain ending in it (OCI image-spec), where known: set by Import,
	// or by Commit when given WithDiffID.
	DiffID  string `json:"diffID,omitempty"`
	ChainID string `json:"chainID,omitempty"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Usage is the disk usage of a layer itself, excluding its parents: bytes of
// allocated blocks and the number of inodes, each hard-linked inode once.
type Usage struct {
	Size   int64 `json:"size"`
	Inodes int64 `json:"inodes"`
}

// Opt sets properties of a layer being made by Prepare, View, Commit or Import.
type Opt func(*Info) error

// WithLabels adds labels to the layer being made.
func WithLabels(labels map[string]string) Opt {
	return func(i *Info) error {
		if i.Labels == nil {
			i.Labels = make(map[string]string, len(labels))
		}
		maps.Copy(i.Labels, labels)
		return nil
	}
}

// WithFormat chooses the format of a layer with no parent made by Prepare or
// View, or of an imported layer (default FormatLinuxDir). Layers with parents
// take their parent's format.
func WithFormat(f Format) Opt {
	return func(i *Info) error {
		if !f.Valid() {
			return classf(ErrInvalidArgument, "unknown layer format %q", f)
		}
		i.Format = f
		return nil
	}
}

// WithDiffID records the digest of the layer's uncompressed tar on Commit
// (Import computes it itself and fails if a different one is given). The chain
// ID is derived from it and the parent's.
func WithDiffID(d string) Opt {
	return func(i *Info) error {
		if !validDigest(d) {
			return classf(ErrInvalidArgument, "diff ID %q is not a sha256 digest", d)
		}
		i.DiffID = d
		return nil
	}
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Mount is one mount to perform, as data: the arguments of one mount(2) call,
// the shape of containerd's mount.Mount. Store operations return them and never
// perform them for the caller.
type Mount struct {
	Type    string   `json:"type"`   // "bind" or "overlay"
	Source  string   `json:"source"` // the directory bound, or "overlay"
	Target  string   `json:"target,omitempty"`
	Options []string `json:"options,omitempty"`
}

func (m Mount) String() string {
	return fmt.Sprintf("%s %s %s", m.Type, m.Source, strings.Join(m.Options, ","))
}
