// Package staging names temporary files and folders after the process that
// makes them, so that a later process can tell what a dead one left behind
// from the work of a live one, and remove it.
//
// A staged name is ".<final>.hcs-tmp-<pid>-<start>-<random>" beside its final
// name, where start is the owner's start time (in clock ticks since boot, from
// /proc/<pid>/stat), so that a reused process ID does not keep a leftover
// alive. [Clean] removes the staged entries of a folder whose owner is gone;
// commands call it before they stage anything, so the next run of any command
// that could have left something removes it.
package staging

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// marker separates the final name from the owner in a staged name.
const marker = ".hcs-tmp-"

var (
	selfOnce  sync.Once
	selfStart uint64
)

// self is this process's ID and start time.
func self() (int, uint64) {
	selfOnce.Do(func() { selfStart, _ = StartTime(os.Getpid()) })
	return os.Getpid(), selfStart
}

// Name returns a new staged name for final, in final's folder.
func Name(final string) string {
	pid, start := self()
	var rnd [6]byte
	rand.Read(rnd[:])
	return filepath.Join(filepath.Dir(final), fmt.Sprintf(".%s%s%d-%d-%s", filepath.Base(final), marker, pid, start, hex.EncodeToString(rnd[:])))
}

// Owner parses a staged name (a path or a base name) and returns its owner's
// process ID and start time.
func Owner(name string) (pid int, start uint64, ok bool) {
	base := filepath.Base(name)
	i := strings.LastIndex(base, marker)
	if !strings.HasPrefix(base, ".") || i < 0 {
		return 0, 0, false
	}
	f := strings.Split(base[i+len(marker):], "-")
	if len(f) != 3 {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(f[0])
	s, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, 0, false
	}
	return p, s, true
}

// StartTime returns the start time of process pid, in clock ticks since boot
// (field 22 of /proc/<pid>/stat).
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("staging: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("staging: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the process pid that started at start still runs. A
// process whose start time cannot be read (another PID namespace, no /proc)
// counts as alive, so that nothing of a live process is removed.
func Alive(pid int, start uint64) bool {
	got, err := StartTime(pid)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	return got == start
}

// Clean removes the staged files and folders in dir whose owner is no longer
// running, and returns what it removed. A missing dir is not an error.
func Clean(dir string) ([]string, error) {
	return clean(dir, func(pid int, start uint64) bool { return !Alive(pid, start) })
}

// RemoveOwn removes the staged entries in dir that this process made: for a
// command that must stop at once, after a second interrupt.
func RemoveOwn(dir string) ([]string, error) {
	me, start := self()
	return clean(dir, func(pid int, s uint64) bool { return pid == me && s == start })
}

func clean(dir string, remove func(pid int, start uint64) bool) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		pid, start, ok := Owner(e.Name())
		if !ok || !remove(pid, start) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}
