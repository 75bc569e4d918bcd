package dmverity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
)

// Verify checks the data and tree Append wrote in f against info (from Append
// or ReadInfo): the superblock agrees with info, every hash block equals the one
// recomputed from the data, and the tree's root is info.RootHash. The first
// disagreement is reported as a *VerifyError (matching ErrMismatch) naming the
// data block whose digest differs, or the hash block that is wrong.
func Verify(f *os.File, info *Info) error {
	return VerifyContext(context.Background(), f, f, info)
}

// VerifyContext is Verify for a tree in another file than the data (hash may be
// data), with a context checked between chunks of 1 MiB.
func VerifyContext(ctx context.Context, data, hash io.ReaderAt, info *Info) error {
	if info == nil || info.Algorithm != Algorithm || info.HashType != 1 ||
		info.DataBlockSize != BlockSize || info.HashBlockSize != BlockSize {
		return fmt.Errorf("%w: Verify needs the Info of a sha256, type 1, 4096/4096 tree", ErrInvalidParams)
	}
	if err := checkSize(info.DataSize); err != nil {
		return err
	}
	if info.DataBlocks*BlockSize != info.DataSize || len(info.Salt) > MaxSaltSize || info.HashOffset < 0 {
		return fmt.Errorf("%w: inconsistent Info", ErrInvalidParams)
	}
	if info.SuperblockOffset >= 0 {
		sb, err := ReadSuperblock(hash, info.SuperblockOffset)
		if err != nil {
			return err
		}
		want := info.Superblock()
		if sb.HashType != want.HashType || sb.Algorithm != want.Algorithm || sb.DataBlockSize != want.DataBlockSize ||
			sb.HashBlockSize != want.HashBlockSize || sb.DataBlocks != want.DataBlocks || !bytes.Equal(sb.Salt, want.Salt) ||
			sb.UUID != want.UUID {
			return &FormatError{Structure: "superblock", Offset: info.SuperblockOffset,
				Err: fmt.Errorf("%w: the superblock does not describe this tree", ErrMismatch)}
		}
	}
	lay := newLayout(info.DataBlocks, info.DataBlocks == 1 && len(info.Levels) == 1)
	stored := make([]byte, chunkSize/hashesPerBlock)
	check := func(level int, index int64, blocks []byte) error {
		off := info.HashOffset + lay.offset[level] + index*BlockSize
		got := stored[:len(blocks)]
		if err := readFull(hash, got, off, fmt.Sprintf("hash tree level %d", level)); err != nil {
			return err
		}
		if bytes.Equal(got, blocks) {
			return nil
		}
		for i := 0; i < len(blocks); i += DigestSize {
			if bytes.Equal(got[i:i+DigestSize], blocks[i:i+DigestSize]) {
				continue
			}
			e := &VerifyError{DataBlock: -1, Level: level, HashOffset: off + int64(i)/BlockSize*BlockSize}
			if db := index*hashesPerBlock + int64(i/DigestSize); level == 0 && db < info.DataBlocks {
				e.DataBlock = db
			}
			return e
		}
		return nil
	}
	root, err := newBuilder(lay, info.Salt, 0, check).run(ctx, io.NewSectionReader(data, 0, info.DataSize), info.DataSize)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, info.RootHash) {
		return &VerifyError{DataBlock: -1, Level: -1, HashOffset: -1}
	}
	return nil
}
