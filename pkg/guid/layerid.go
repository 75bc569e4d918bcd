package guid

// NamespaceDNS is the RFC 4122 name space for fully qualified domain names,
// 6ba7b810-9dad-11d1-80b4-00c04fd430c8.
var NamespaceDNS = GUID{
	Data1: 0x6ba7b810,
	Data2: 0x9dad,
	Data3: 0x11d1,
	Data4: [8]byte{0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8},
}

// LayerNamespace is the name space [NameToGuid] hashes layer names in:
// 5afe54f1-1ab5-5b4d-93c2-62c26d143b03, which is
// NewV5(NamespaceDNS, []byte("layers.hostcompute.dev")). It is spelled out
// here so that the value can never change by accident; a test recomputes it.
// Changing it would change every layer ID this package derives.
var LayerNamespace = GUID{
	Data1: 0x5afe54f1,
	Data2: 0x1ab5,
	Data3: 0x5b4d,
	Data4: [8]byte{0x93, 0xc2, 0x62, 0xc2, 0x6d, 0x14, 0x3b, 0x03},
}

// NameToGuid derives the layer ID for a layer name: NewV5(LayerNamespace, the
// UTF-8 bytes of name). The name is used exactly as given, with no case
// folding or normalisation, so "Layer" and "layer" give different IDs.
//
// It stands in for the HCS NameToGuid function that wclayer.NameToGuid and
// wclayer.LayerID call on Windows. The algorithm HCS uses (vmcompute.dll) is
// not public, so the IDs returned here are stable and deterministic across
// hosts and releases, but they differ from the IDs Windows computes for the
// same name. Do not mix IDs from the two sources.
func NameToGuid(name string) GUID {
	return NewV5(LayerNamespace, []byte(name))
}
