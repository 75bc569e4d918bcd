//go:build !unix

package cimfs

import "os"

// processMayExist reports whether process pid may still run: on systems
// without kill(2) finding the process is the test (Windows opens a handle to it).
func processMayExist(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
