package hostcompute

import (
	"context"
	"crypto/sha1"

	"github.com/hostcompute/hostcompute/pkg/guid"
	"github.com/hostcompute/hostcompute/wclayer"
)

// GUID is a GUID as its 16 bytes in Windows (mixed-endian) order: Data1, Data2 and
// Data3 little-endian, then the 8 bytes of Data4. This is the layout of a GUID inside
// Windows structures, and hcsshim's GUID type. Package guid holds the same value as
// fields; convert with guid.FromWindowsArray and guid.GUID.ToWindowsArray.
type GUID [16]byte

// NewGUID returns a GUID made from source: the first 16 bytes of the SHA-1 digest of
// the UTF-8 bytes of source, taken as they are. No version or variant bits are set, so
// the result is not an RFC 4122 name-based UUID, and it is not the layer ID that
// NameToGuid derives from the same name.
func NewGUID(source string) *GUID {
	sum := sha1.Sum([]byte(source))
	var g GUID
	copy(g[:], sum[:16])
	return &g
}

// ToString returns g in the 36-character 8-4-4-4-12 text form, in lower case, reading
// its bytes in Windows order. For a layer ID from NameToGuid it gives the same text as
// the guid.GUID that wclayer.NameToGuid returns.
func (g *GUID) ToString() string {
	return guid.FromWindowsArray(*g).String()
}

// NameToGuid converts a name, usually a layer folder's last path element, into a GUID,
// returned in Windows byte order. The same name gives the same GUID on every host. The
// Host Compute Service's own algorithm is not public, so these GUIDs differ from the
// ones Windows computes; see guid.NameToGuid for the algorithm used.
func NameToGuid(name string) (id GUID, err error) { //nolint:revive // hcsshim's name
	g, err := wclayer.NameToGuid(context.Background(), name)
	if err != nil {
		return GUID{}, err
	}
	return GUID(g.ToWindowsArray()), nil
}
