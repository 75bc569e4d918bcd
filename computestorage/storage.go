package computestorage

// Version is a schema version of a Host Compute Service document. Both fields are
// omitted from JSON when zero, so the zero Version marshals as {}.
type Version struct {
	Major int32 `json:"Major,omitempty"`
	Minor int32 `json:"Minor,omitempty"`
}

// Layer describes one layer in a LayerData document, as the HCS schema's Layer does.
// Every field is omitted from JSON when empty.
type Layer struct {
	// Id is the layer's GUID in the 8-4-4-4-12 text form. The name is the schema's.
	Id string `json:"Id,omitempty"` //nolint:revive // the schema's key
	// Path is the layer folder.
	Path string `json:"Path,omitempty"`
	// PathType says how Path is read: "AbsolutePath" (as given) or
	// "VirtualSmbShareName" (relative to a utility VM's shares). Empty means absolute.
	PathType string `json:"PathType,omitempty"`
	// Cache is the caching mode: "Unspecified" (the default, meaning enabled),
	// "Disabled", "Enabled", "Private" or "PrivateAllowSharing". It does not change
	// what this package does.
	Cache string `json:"Cache,omitempty"`
}

// FileSystemFilterType names the union filter a LayerData document asks for.
type FileSystemFilterType string

// Filter types, spelled as the Host Compute Service expects them. On Linux both are
// realised with overlayfs.
const (
	// UnionFS is the union filter used over CimFS layers.
	UnionFS FileSystemFilterType = "UnionFS"
	// WCIFS is the Windows Container Isolation filter used over layer folders.
	WCIFS FileSystemFilterType = "WCIFS"
)

// LayerData describes the parent layers of a layer: the layerData document of the HCS
// storage calls. Layers lists the parents, immediate parent first and base layer last.
//
// SchemaVersion is always present in JSON, so an empty LayerData marshals as
// {"SchemaVersion":{}}, which is what hcsshim sends. Layers and FilterType are omitted
// when empty.
type LayerData struct {
	// hcsshim tags SchemaVersion omitempty, which encoding/json ignores for a struct;
	// the tag here leaves it out so the always-present object is plain to see.
	SchemaVersion Version              `json:"SchemaVersion"`
	Layers        []Layer              `json:"Layers,omitempty"`
	FilterType    FileSystemFilterType `json:"FilterType,omitempty"`
}

// parentPaths returns the Path of each layer of d, in order.
func (d *LayerData) parentPaths() []string {
	if len(d.Layers) == 0 {
		return nil
	}
	paths := make([]string, len(d.Layers))
	for i, l := range d.Layers {
		paths[i] = l.Path
	}
	return paths
}

// ExportLayerOptions are the options of ExportLayer: the options document of
// HcsExportLayer. The zero value marshals as {}.
type ExportLayerOptions struct {
	// IsWritableLayer says the layer being exported is a writable (scratch) layer.
	IsWritableLayer bool `json:"IsWritableLayer,omitempty"`
}

// OsLayerType is the kind of base OS layer SetupBaseOSLayer and SetupBaseOSVolume
// prepare.
type OsLayerType string

// Base OS layer types.
const (
	// OsLayerTypeContainer is a container layer.
	OsLayerTypeContainer OsLayerType = "Container"
	// OsLayerTypeVM is a virtual machine (utility VM) layer.
	OsLayerTypeVM OsLayerType = "Vm"
)

// OsLayerOptions are the options of SetupBaseOSLayer and SetupBaseOSVolume. Every field
// is omitted from JSON when zero.
type OsLayerOptions struct {
	Type                       OsLayerType `json:"Type,omitempty"`
	DisableCiCacheOptimization bool        `json:"DisableCiCacheOptimization,omitempty"`
	SkipUpdateBcdForBoot       bool        `json:"SkipUpdateBcdForBoot,omitempty"`
}
