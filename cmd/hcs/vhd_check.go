package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// maxCheckProblems bounds the problems vhd check lists.
const maxCheckProblems = 100

func (a *app) newVHDCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a VHD or VHDX disk by reading all of it",
		Long: `Open the disk read-only, validate its structures, and read every block of the
virtual disk, through the parent chain of a differencing disk. For a dynamic or
differencing VHD the footer copy at offset 0 must match the footer at the end; a
VHDX must have two valid headers, two identical region tables and no log left
to replay. The file is never modified.

Exit code 0 when the disk is sound, 3 when it is corrupt (each problem printed;
also a parent whose identity differs from the one the child records, and a
VHDX whose log needs replaying),
5 when the file or the parent of a differencing disk is missing.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			path := args[0]
			d, format, err := openDisk(path, "auto", false)
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			defer d.Close()
			var problems []string
			if vd, ok := d.(*vhd.Disk); ok && vd.Format() == vhd.FormatVHD && vd.Type() != vhd.Fixed {
				if p := checkFooterCopy(path, vd.Footer()); p != "" {
					problems = append(problems, p)
				}
			}
			if format == formatVHDX {
				problems = append(problems, checkVHDXCopies(path)...)
			}
			bar := a.progress("check", d.Size())
			readErr := checkReadAll(cmd, d, bar.Add, func(p string) { problems = append(problems, p) })
			bar.Stop()
			if readErr != nil {
				return fmt.Errorf("check: %w", readErr)
			}
			if len(problems) > maxCheckProblems {
				problems = append(problems[:maxCheckProblems], fmt.Sprintf("%d more problems not listed", len(problems)-maxCheckProblems))
			}
			text := fmt.Sprintf("%s disk %s is sound", format, path)
			if len(problems) > 0 {
				text = strings.Join(problems, "\n")
			}
			if err := a.result(text, vhdCheckResult{Disk: Disk{File: absPath(path), Format: format, VirtualSize: d.Size(), ReadOnly: true}, CheckResult: newCheckResult(problems)}); err != nil {
				return err
			}
			if len(problems) > 0 {
				return fmt.Errorf("check: %d problems in %s: %w", len(problems), path, vhd.ErrInvalidFormat)
			}
			return nil
		}),
	}
}

// checkVHDXCopies checks what a VHDX keeps twice: both headers must be valid
// (7-Zip refuses a file with one bad header) and both region tables identical.
func checkVHDXCopies(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var problems []string
	for i, off := range []int64{64 << 10, 128 << 10} {
		b := make([]byte, vhd.VHDXHeaderSize)
		if _, err := f.ReadAt(b, off); err != nil {
			problems = append(problems, fmt.Sprintf("VHDX header %d at offset %d: %v", i+1, off, err))
		} else if _, err := vhd.ParseVHDXHeaderAt(b, off); err != nil {
			problems = append(problems, fmt.Sprintf("VHDX header %d: %v", i+1, err))
		}
	}
	var tables [2][]byte
	for i, off := range []int64{192 << 10, 256 << 10} {
		tables[i] = make([]byte, vhd.VHDXRegionTableSize)
		if _, err := f.ReadAt(tables[i], off); err != nil {
			problems = append(problems, fmt.Sprintf("VHDX region table %d at offset %d: %v", i+1, off, err))
		}
	}
	if !bytes.Equal(tables[0], tables[1]) {
		problems = append(problems, "VHDX region table 2 at offset 262144 differs from region table 1")
	}
	return problems
}

// checkFooterCopy compares the footer copy at offset 0 with the footer in use.
func checkFooterCopy(path string, want vhd.Footer) string {
	f, err := os.Open(path)
	if err != nil {
		return "footer copy at offset 0: " + err.Error()
	}
	defer f.Close()
	b := make([]byte, vhd.FooterSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return "footer copy at offset 0: " + err.Error()
	}
	copy0, err := vhd.ParseFooter(b)
	if err != nil {
		return "footer copy at offset 0: " + err.Error()
	}
	got, _ := copy0.MarshalBinary()
	exp, _ := want.MarshalBinary()
	if !bytes.Equal(got, exp) {
		return "footer copy at offset 0 differs from the footer at the end of the file"
	}
	return ""
}

// checkReadAll reads the whole virtual disk in 1 MiB chunks. Format errors become
// problems and the check goes on with the next chunk; other errors (I/O,
// interruption) end it.
func checkReadAll(cmd *cobra.Command, d virtualDisk, add func(int64), problem func(string)) error {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	size := d.Size()
	for off := int64(0); off < size; off += chunk {
		if err := cmd.Context().Err(); err != nil {
			return err
		}
		n := min(int64(chunk), size-off)
		_, err := d.ReadAt(buf[:n], off)
		if errors.Is(err, io.EOF) && off+n == size {
			err = nil
		}
		if err != nil {
			if !errors.Is(err, vhd.ErrInvalidFormat) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			problem(fmt.Sprintf("virtual offset %d: %v", off, err))
		}
		add(n)
	}
	return nil
}

// vhdCheckResult is the -o json document of vhd check.
type vhdCheckResult struct {
	Disk
	CheckResult
}
