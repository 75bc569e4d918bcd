package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// fact is one line of the machine description.
type fact struct{ name, value string }

// machineFacts describes what the figures depend on: kernel, CPU, memory, toolchain,
// peer versions, the filesystem of the work directory and the commit measured.
func machineFacts(ctx context.Context, env *Env) []fact {
	facts := []fact{
		{"kernel", kernel()},
		{"CPU", fmt.Sprintf("%s, %d CPUs (nproc)", cpuModel(), runtime.NumCPU())},
		{"memory", memTotal()},
		{"free page reporting", reportingFact(env)},
		{"go", runtime.Version()},
		{"GNU tar", orDefault(toolVersion(ctx, "tar"), "not installed")},
		{"work dir", env.Work + ": " + filesystem(env.Work)},
		{"commit", commit(ctx, env.Root)},
	}
	return facts
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func reportingFact(env *Env) string {
	if env.Prefault && env.HeldMemory {
		return "on (virtio balloon): stopped while the bench runs (page_reporting_order above the largest order, restored at exit), free memory made resident at the start and before each run"
	}
	if env.Prefault {
		return "on (virtio balloon): free memory is made resident before each run (reporting could not be stopped: figures of rows that write much vary)"
	}
	return "off"
}

func memTotal() string {
	if n := memInfo("MemTotal"); n > 0 {
		return sizeIEC(n)
	}
	return "unknown"
}

// commit names the commit of the repository, with "+ local changes" when the work
// tree differs from it.
func commit(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " + local changes"
	}
	return c
}

// writeReport writes the results as markdown: machine, parameters, the table and
// every run.
func writeReport(w io.Writer, env *Env, facts []fact, results []*Result, elapsed time.Duration, interrupted bool) {
	fmt.Fprintf(w, "# hostcompute benchmarks\n\n")
	fmt.Fprintf(w, "Run of %s, %s", time.Now().UTC().Format("2006-01-02 15:04 MST"), elapsed.Round(time.Second))
	if interrupted {
		fmt.Fprintf(w, " (interrupted)")
	}
	fmt.Fprintf(w, ".\n\n## Machine\n\n")
	for _, f := range facts {
		fmt.Fprintf(w, "- %s: %s\n", f.name, f.value)
	}
	mode := "full"
	if env.Quick {
		mode = "quick (smaller inputs)"
	}
	fmt.Fprintf(w, "\n## Parameters\n\n")
	fmt.Fprintf(w, "- seed %d, %d pairs per row (peer, then ours), %s\n", env.Seed, env.Pairs, mode)
	fmt.Fprintf(w, "- hcs: %s\n- input cache: %s\n", env.HCS, env.Cache)
	switch {
	case !env.Cooldown:
		fmt.Fprintf(w, "- runs kept until their row ends; no wait after deletions (not ext4 without a journal)\n")
	case env.Quick:
		fmt.Fprintf(w, "- runs kept until their row ends; no wait after deletions in a quick run: rows that create many files right after a row deleted many are slowed on this filesystem\n")
	default:
		fmt.Fprintf(w, "- runs kept until their row ends; rows that create many files start %s after the last deletion\n", deleteCooldown)
	}
	for _, r := range results {
		if r.Setup.Input != "" {
			fmt.Fprintf(w, "- %s: %s\n", r.Row.Name, r.Setup.Input)
		}
	}

	fmt.Fprintf(w, "\n## Results\n\n")
	fmt.Fprintf(w, "ratio = peer median / ours median: above 1 means ours is faster. MB/s = input bytes (10^6) / median time. Peak RSS: the largest over all runs.\n\n")
	fmt.Fprintf(w, "| row | peer | peer median | ours median | ratio | peer MB/s | ours MB/s | peer peak RSS | ours peak RSS | notes |\n")
	fmt.Fprintf(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range results {
		notes := r.Notes
		if len(r.Ours) < env.Pairs && len(r.Ours) > 0 {
			notes = append(notes, fmt.Sprintf("only %d of %d pairs", len(r.Ours), env.Pairs))
		}
		if r.Err != nil {
			first, _, _ := strings.Cut(r.Err.Error(), "\n")
			notes = append(notes, "FAILED: "+first)
		}
		pm, om := median(walls(r.Peer)), median(walls(r.Ours))
		cells := []string{r.Row.Name, r.Row.Peer.Name, "", "", "", "", "", "", "", strings.Join(notes, "; ")}
		if len(r.Peer) > 0 && len(r.Ours) > 0 {
			cells[2], cells[3] = seconds(pm), seconds(om)
			cells[4] = fmt.Sprintf("%.2f", pm.Seconds()/om.Seconds())
			if r.Setup.Bytes > 0 {
				cells[5], cells[6] = mbps(r.Setup.Bytes, pm), mbps(r.Setup.Bytes, om)
			}
			cells[7], cells[8] = sizeIEC(maxRSS(r.Peer)), sizeIEC(maxRSS(r.Ours))
		}
		writeCells(w, cells)
	}

	fmt.Fprintf(w, "\n## Runs\n\n")
	fmt.Fprintf(w, "Wall and CPU (user + system) time of each run, peak RSS of its largest process.\n\n")
	fmt.Fprintf(w, "| row | pair | peer wall | ours wall | peer CPU | ours CPU | peer RSS | ours RSS |\n")
	fmt.Fprintf(w, "|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		for i := range min(len(r.Peer), len(r.Ours)) {
			p, o := r.Peer[i], r.Ours[i]
			writeCells(w, []string{r.Row.Name, strconv.Itoa(i + 1), seconds(p.Wall), seconds(o.Wall),
				seconds(p.CPU), seconds(o.CPU), sizeIEC(p.MaxRSS), sizeIEC(o.MaxRSS)})
		}
		if len(r.Peer) > 0 && len(r.Ours) > 0 {
			writeCells(w, []string{r.Row.Name, "median", seconds(median(walls(r.Peer))), seconds(median(walls(r.Ours))),
				seconds(median(cpus(r.Peer))), seconds(median(cpus(r.Ours))), "", ""})
		}
	}
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(w, "\n%s failed:\n\n```\n%v\n```\n", r.Row.Name, r.Err)
		}
	}
}

func writeCells(w io.Writer, cells []string) {
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// Formatting.

func seconds(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.3f s", d.Seconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mbps(n int64, d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", float64(n)/1e6/d.Seconds())
}

// sizeIEC formats a byte count with binary units: "1 GiB", "87.3 MiB".
func sizeIEC(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// countSI formats a count: 52000 as "52k".
func countSI(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}
