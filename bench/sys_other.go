//go:build !linux

package main

import (
	"os"
	"runtime"
	"time"
)

// The benchmarks measure Linux mechanisms; elsewhere these hooks only let the program
// build, and main refuses to run.

func cpuTime(ps *os.ProcessState) time.Duration { return 0 }

func syncAll() {}

func kernel() string { return runtime.GOOS }

func filesystem(path string) string { return "unknown" }

func ext4WithoutJournal(path string) bool { return false }

func freeSpace(path string) int64 { return 0 }

func freePageReporting() bool { return false }

func prefault(n int64) {}

func holdFreeMemory(stateDir string) (func() error, error) { return func() error { return nil }, nil }

func memInfo(field string) int64 { return 0 }

func evictTree(dir string) {}
