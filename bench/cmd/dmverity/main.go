// Command dmverity is bench's side of the dm-verity row: it builds the dm-verity
// hash device of a data file with pkg/dmverity, in the layout of `veritysetup
// format DATA HASH` (the superblock padded to 4096 bytes, then the tree), and
// prints the root hash as veritysetup does.
//
// Usage:
//
//	dmverity DATA HASH
//
// The data size must be a multiple of 4096. The salt is 32 zero bytes, the one
// hcsshim uses; the UUID is derived from the root hash.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/hostcompute/hostcompute/pkg/dmverity"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: dmverity DATA HASH")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "dmverity:", err)
		os.Exit(1)
	}
}

func run(dataPath, hashPath string) error {
	data, err := os.Open(dataPath)
	if err != nil {
		return err
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return err
	}
	hash, err := os.Create(hashPath)
	if err != nil {
		return err
	}
	defer hash.Close()
	// The tree goes after the superblock's block; the superblock is written last,
	// once the UUID (derived from the root) is known.
	info, err := dmverity.Compute(context.Background(), data, st.Size(), dmverity.Params{},
		io.NewOffsetWriter(hash, dmverity.BlockSize))
	if err != nil {
		return err
	}
	sb, err := info.Superblock().MarshalBinary()
	if err != nil {
		return err
	}
	if _, err := hash.WriteAt(append(sb, make([]byte, dmverity.BlockSize-len(sb))...), 0); err != nil {
		return err
	}
	fmt.Printf("UUID:            \t%s\nRoot hash:      \t%s\n", info.Superblock().UUIDString(), info.RootHashHex())
	return hash.Close()
}
