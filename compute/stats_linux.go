package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	runc "github.com/containerd/go-runc"
)

// runcStats runs `runc events --stats` (go-runc's Stats races its own reaper
// for the output pipe).
func runcStats(ctx context.Context, id string) (*runc.Stats, error) {
	out, err := exec.CommandContext(ctx, "runc", "--root", runcRoot(), "events", "--stats", id).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return nil, fmt.Errorf("runc events: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("runc events: %w", err)
	}
	var e runc.Event
	if err := json.Unmarshal(out, &e); err != nil {
		return nil, fmt.Errorf("runc events: %w", err)
	}
	if e.Stats == nil {
		return nil, fmt.Errorf("runc events: no statistics in %q", out)
	}
	return e.Stats, nil
}

// Stats are a container's resource figures, read from its cgroups.
type Stats struct {
	Time    time.Time `json:"time"`
	Started time.Time `json:"started,omitzero"`
	// Memory, in bytes: usage (cache included), its peak, and the private
	// working set (anonymous memory: v1 total_rss, v2 anon).
	MemoryUsage, MemoryPeak, MemoryPrivate uint64
	// Processor time, in nanoseconds.
	CPUTotal, CPUUser, CPUKernel uint64
	// Storage: operations and bytes (see storageStats for what v1 counts).
	ReadOps, ReadBytes, WriteOps, WriteBytes uint64
}

// Stats reads the container's resource figures (`runc events --stats`, which
// reads the cgroups, v1 or v2).
func (c *Container) Stats(ctx context.Context) (*Stats, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Status == StatusStopped {
		return nil, c.wrap("stats", fmt.Errorf("%w: the container has stopped", ErrStopped))
	}
	if info.InitPid == 0 {
		return &Stats{Time: time.Now().UTC()}, nil
	}
	rs, err := runcStats(ctx, c.id)
	if err != nil {
		if c.Stopped() {
			return nil, c.wrap("stats", fmt.Errorf("%w: the container has stopped", ErrStopped))
		}
		return nil, c.wrap("stats", runcError(err, filepath.Join(c.dir, runcLog)))
	}
	s := &Stats{Time: time.Now().UTC(), Started: info.Started,
		MemoryUsage: rs.Memory.Usage.Usage, MemoryPeak: rs.Memory.Usage.Max,
		CPUTotal: rs.Cpu.Usage.Total, CPUUser: rs.Cpu.Usage.User, CPUKernel: rs.Cpu.Usage.Kernel}
	for _, k := range []string{"total_rss", "anon", "rss"} {
		if v, ok := rs.Memory.Raw[k]; ok {
			s.MemoryPrivate = v
			break
		}
	}
	if s.MemoryPeak == 0 {
		// cgroup v2 before runc reports memory.peak.
		if v, ok := readUint(filepath.Join(memoryCgroup(c.id), "memory.peak")); ok {
			s.MemoryPeak = v
		}
	}
	s.ReadOps, s.ReadBytes, s.WriteOps, s.WriteBytes = storageStats(c.id)
	return s, nil
}
