// Package winlayer reads and writes Windows container layers in the folder form, on
// Linux, without losing any Windows metadata.
//
// # Model
//
// A layer is a folder chosen by the caller:
//
//	Files/, Hives/, UtilityVM/Files/   real files and directories, browsable by any tool
//	hcsmeta/layer.db                   per-entry Windows metadata (bbolt)
//	hcsmeta/streams/                   alternate data stream contents, one file each
//	tombstones.txt                     names removed from the parents (non-base layers)
//	layerchain.json                    parent folders, immediate parent first
//
// The metadata database keeps what a Linux file cannot: the four FILETIMEs and the
// attributes, the security descriptor (each distinct one stored once), extended
// attributes, the reparse buffer, the list of alternate data streams and any other backup
// stream byte for byte. Symbolic links and junctions are Linux symbolic links in Files/ so
// the tree stays browsable; their exact reparse buffers are in the metadata. Entries are
// keyed by their case-folded name, which gives Windows' case-insensitive lookups and
// catches names that differ only in case.
//
// # Writing
//
// A Writer stages the layer in a hidden folder beside its destination and renames it into
// place on Close, after one syncfs; a failure, Abort, or a killed process leaves no layer.
// Every path is opened beneath the staging folder with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS), so no entry, symbolic link or hard link can reach outside it.
// Names are checked against Windows' rules (CleanName). A name given twice replaces the
// earlier entry, as real image layers need. Memory use does not grow with the size of
// the layer: data is streamed and metadata goes to the database in bounded transactions.
//
// # Reading
//
// A Reader walks the folder in a fixed order (see Reader), so the same layer always
// produces the same sequence of entries; files added by other tools get metadata derived
// from the Linux file.
//
// # Errors
//
// Failures tied to an entry are *EntryError values naming the layer, the entry and the
// operation; whole-layer failures are *LayerError. The causes are the sentinel errors
// of this package (ErrInvalidName, ErrInsecurePath, ErrCaseCollision, ...), testable with
// errors.Is.
//
// # Concurrency
//
// Writers and Readers are not safe for concurrent use. Any number of Readers may read a
// finished layer at once. A layer must not be written by two Writers: each Writer makes
// its own staging folder and the second rename fails with ErrLayerExists.
package winlayer
