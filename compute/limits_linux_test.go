package compute

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestMemoryLimitOOM(t *testing.T) {
	t.Parallel()
	c := newContainer(t, func(cfg *Config) { cfg.MemoryBytes = 16 << 20 })
	ctx := context.Background()
	// The shell keeps 48 MB in a variable: past the limit.
	_, _, e := run(t, c, true, "", "sh", "-c", "a=$(head -c 48000000 /dev/zero | tr '\\0' x); echo ${#a}")
	if !e.OOM || e.Code != 137 {
		t.Errorf("exit %+v, want OOM-killed with 137", e)
	}
	ce, err := c.Wait(ctx)
	if err != nil || ce == nil || !ce.OOM {
		t.Errorf("container wait: %+v %v, want the OOM reported", ce, err)
	}
}

func TestCPUMaximumThrottles(t *testing.T) {
	t.Parallel()
	const percent = 25
	c := newContainer(t, func(cfg *Config) { cfg.CPUMaximum = percent })
	ctx := context.Background()
	if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh", "-c", "while :; do :; done"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	s0, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(2 * time.Second)
	s1, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	used := time.Duration(s1.CPUTotal - s0.CPUTotal)
	allowed := time.Duration(float64(wall) * float64(runtime.NumCPU()) * percent / 100)
	t.Logf("busy loop used %v of CPU in %v; the limit allows %v", used, wall, allowed)
	if used > allowed*12/10 {
		t.Errorf("used %v, more than the limit %v + 20%%", used, allowed)
	}
	if used == 0 {
		t.Error("the busy loop used no processor time: is it running?")
	}
	c.Kill(ctx)
	c.Wait(ctx)
}

func TestStatisticsRise(t *testing.T) {
	t.Parallel()
	c := newContainer(t, nil)
	ctx := context.Background()
	if _, err := c.Start(ctx, &ProcessSpec{Args: []string{"sh", "-c", "sleep 0.3; a=$(head -c 20000000 /dev/zero | tr '\\0' x); dd if=/dev/zero of=/tmp/f bs=1M count=8 oflag=direct 2>/dev/null; sync; dd if=/tmp/f of=/dev/null bs=1M iflag=direct 2>/dev/null; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 100"}}); err != nil {
		t.Fatal(err)
	}
	s0, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var s1 *Stats
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		if s1, err = c.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		if s1.CPUTotal > s0.CPUTotal+200e6 && s1.WriteBytes > s0.WriteBytes {
			break
		}
	}
	t.Logf("before %+v", *s0)
	t.Logf("after  %+v", *s1)
	if s1.CPUTotal <= s0.CPUTotal || s1.CPUUser+s1.CPUKernel <= s0.CPUUser+s0.CPUKernel {
		t.Error("processor time did not rise")
	}
	if s1.MemoryPeak <= s0.MemoryUsage || s1.MemoryPeak < 20e6 {
		t.Errorf("memory peak %d did not rise past the 20 MB the shell held", s1.MemoryPeak)
	}
	if s1.WriteBytes <= s0.WriteBytes || s1.WriteOps <= s0.WriteOps {
		t.Error("storage writes did not rise")
	}
	if s1.ReadBytes < s0.ReadBytes {
		t.Error("storage reads went down")
	}
	c.Kill(ctx)
	c.Wait(ctx)
}
