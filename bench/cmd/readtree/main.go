// Command readtree reads every regular file under a directory to its end, the
// way a backup or a container start touches an image, and prints the number
// of files and bytes read. Symlinks are not followed; hard links are read once
// per name. It is the reading side of bench's image read rows.
//
// Usage: readtree DIR
package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: readtree DIR")
		os.Exit(2)
	}
	buf := make([]byte, 1<<20)
	var files, bytes int64
	err := filepath.WalkDir(os.Args[1], func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			n, err := f.Read(buf)
			bytes += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		files++
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "readtree:", err)
		os.Exit(1)
	}
	fmt.Printf("%d %d\n", files, bytes)
}
