package winlayer

import (
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Entry describes one file, directory, reparse point or hard link of a layer, with all
// the Windows metadata the layer keeps for it.
type Entry struct {
	// Name is layer-relative and slash separated, e.g. "Files/Windows/System32/x.dll".
	Name string
	// Info holds the four times and the file attributes. AttrDirectory marks a
	// directory; a non-nil Reparse marks a reparse point.
	Info winfile.BasicInfo
	// Size is the length of the unnamed data stream. For a sparse file it is the
	// logical size; holes read as zeros.
	Size int64
	// NoDataStream records that the file had no unnamed data stream at all (an empty
	// file that Windows backed up without a DATA stream), as opposed to an empty one.
	NoDataStream bool
	// SecurityDescriptor is a self-relative security descriptor, or nil.
	SecurityDescriptor []byte
	// ExtendedAttributes in the order Windows returned them.
	ExtendedAttributes []winfile.ExtendedAttribute
	// Reparse is the complete reparse buffer (with its 8-byte header), or nil.
	Reparse []byte
	// Streams lists the alternate data streams. A Reader fills it; a Writer takes
	// streams through AddStream instead.
	Streams []Stream
	// RawStreams keeps backup streams that have no other home (link, property,
	// object ID, transactional data, ghosted extents and unknown IDs), byte for byte.
	RawStreams []RawStream
	// LinkTarget, when set by a Reader, names the first entry (in reading order) of the
	// file this entry is a hard link to; the entry then has no data of its own.
	LinkTarget string
	// ParentLink, when set by a Reader, names the file of a parent layer this entry
	// is a hard link to (the layer added it with AddLink to an inherited file). The
	// entry still has its data and metadata, so a reader that cannot refer to parent
	// layers may take it as a file of its own; tar and CIM forms keep the link.
	ParentLink string
	// Removed marks a whiteout: the layer deletes Name, inherited from a parent layer.
	// No other field is set.
	Removed bool

	dataID uint64 // nonzero: the data of a reparse point, kept in a stream file
}

// IsDir reports whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.Info.FileAttributes&winfile.AttrDirectory != 0 }

// linkReparse decodes the reparse buffer when it is a symbolic link or mount point.
func (e *Entry) linkReparse() *winfile.ReparsePoint {
	if len(e.Reparse) == 0 {
		return nil
	}
	rp, err := winfile.DecodeReparsePoint(e.Reparse)
	if err != nil || !rp.IsSymlinkOrMountPoint() {
		return nil
	}
	return rp
}

// Stream describes an alternate data stream.
type Stream struct {
	// Name is the stream name as Windows reports it, e.g. ":Zone.Identifier:$DATA".
	Name string
	// Size is the logical length of the stream.
	Size int64
	// Attributes are the backup stream attributes (winfile.StreamAttrSparse, ...).
	Attributes uint32

	id uint64 // file under hcsmeta/streams holding the content
}

// RawStream is a backup stream kept opaque.
type RawStream struct {
	ID         winfile.StreamID
	Attributes uint32
	Name       string
	Data       []byte
}

// Clone returns a deep copy of e.
func (e *Entry) Clone() *Entry {
	c := *e
	c.SecurityDescriptor = append([]byte(nil), e.SecurityDescriptor...)
	c.Reparse = append([]byte(nil), e.Reparse...)
	if e.Reparse == nil {
		c.Reparse = nil
	}
	if e.SecurityDescriptor == nil {
		c.SecurityDescriptor = nil
	}
	c.ExtendedAttributes = nil
	for _, ea := range e.ExtendedAttributes {
		ea.Value = append([]byte(nil), ea.Value...)
		c.ExtendedAttributes = append(c.ExtendedAttributes, ea)
	}
	c.Streams = append([]Stream(nil), e.Streams...)
	c.RawStreams = nil
	for _, rs := range e.RawStreams {
		rs.Data = append([]byte(nil), rs.Data...)
		c.RawStreams = append(c.RawStreams, rs)
	}
	return &c
}
