package compute

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Stats are a container's resource figures, read from its cgroups.
type Stats struct {
	Time    time.Time `json:"time"`
	Started time.Time `json:"started,omitzero"`
	// Memory, in bytes: usage (cache included), its peak, and the private
	// working set (anonymous memory: v1 total_rss, v2 anon).
	MemoryUsage, MemoryPeak, MemoryPrivate uint64
	// Processor time, in nanoseconds.
	CPUTotal, CPUUser, CPUKernel uint64
	// Storage operations and bytes, over every device.
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
	rs, err := newRunc(c.dir).Stats(ctx, c.id)
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
	for _, e := range rs.Blkio.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			s.ReadBytes += e.Value
		case "write":
			s.WriteBytes += e.Value
		}
	}
	for _, e := range rs.Blkio.IoServicedRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			s.ReadOps += e.Value
		case "write":
			s.WriteOps += e.Value
		}
	}
	return s, nil
}
