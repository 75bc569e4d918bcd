//go:build !linux

package ext4

// writeback does nothing where sync_file_range does not exist.
type writeback struct{}

func newWriteback(Output) *writeback  { return nil }
func (*writeback) start(off, n int64) {}
func (*writeback) stop()              {}
