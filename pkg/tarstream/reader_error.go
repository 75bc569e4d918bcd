package tarstream

import "strconv"

const (
	// blockSize is the tar block: headers and data padding come in these.
	blockSize = 512
	// maxSpecialFileSize bounds what is held in memory for one extension
	// header (PAX records, GNU long names, sparse maps), as in archive/tar.
	maxSpecialFileSize = 1 << 20
	// maxSparseEntries bounds the fragments of one sparse file, as in archive/tar.
	maxSparseEntries = 1 << 20
)

// blockPadding is the number of bytes after n bytes of data up to the next block.
func blockPadding(n int64) int64 { return -n & (blockSize - 1) }

// Error is an error of the stream tied to an entry: the entry's name (empty
// before the first header is decoded) and the byte offset in the stream where
// the problem lies (the header block that failed to decode, or the place in the
// data where the stream ended).
type Error struct {
	Entry  string
	Offset int64
	Err    error
}

func (e *Error) Error() string {
	name := e.Entry
	if name == "" {
		name = "(no name yet)"
	}
	return "tar entry " + strconv.Quote(name) + " at byte " + strconv.FormatInt(e.Offset, 10) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Cause returns the error err is, without the entry and offset: the Err of an
// *Error, or err itself. For callers whose own errors name the entry and offset.
func Cause(err error) error {
	if e, ok := err.(*Error); ok {
		return e.Err
	}
	return err
}
