package vhd

// forEachBlock splits the virtual range [off, off+len(p)) at block boundaries and
// calls fn for each piece with its block number and its offset inside the block. It
// returns the bytes handled before the first error.
func forEachBlock(p []byte, off, blockSize int64, fn func(part []byte, blk, in int64) error) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		blk, in := pos/blockSize, pos%blockSize
		n := int(min(int64(len(p)-done), blockSize-in))
		if err := fn(p[done:done+n], blk, in); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}
