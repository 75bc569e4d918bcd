package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// endpointGoal is the goal: an endpoint's create+delete at most this many
// times the same CNI calls made directly with libcni.
const endpointGoal = 1.2

// cniPluginsVersion is where scripts/install-go-peers.sh builds the CNI plugins
// (bin/cni/<version>); hns.PluginsVersion.
const cniPluginsVersion = "v1.10.0"

// hnsRows is the endpoint latency row.
func hnsRows(env *Env) []*Row {
	cycles := 10
	if env.Quick {
		cycles = 3
	}
	var tool, plugins string
	inProc := map[string][]time.Duration{}
	side := func(mode string) Side {
		name := "hns CreateEndpoint + DeleteEndpoint"
		if mode == "peer" {
			name = "netns + libcni AddNetworkList + DelNetworkList"
		}
		return Side{
			Name: name,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				ns := filepath.Join(dir, "netns")
				if err := os.Mkdir(ns, 0o755); err != nil {
					return nil, err
				}
				cmd := env.command(ctx, tool, "-mode", mode, "-state", filepath.Join(dir, "state"),
					"-netns", ns, "-cni", plugins, "-n", strconv.Itoa(cycles))
				var out bytes.Buffer
				cmd.Stdout = &out
				return &Run{
					Cmds: []*exec.Cmd{cmd},
					Check: func() error {
						var ns int64
						var c int
						if _, err := fmt.Sscanf(out.String(), "cycle_ns=%d cycles=%d", &ns, &c); err != nil {
							return fmt.Errorf("endpointcycle printed %q: %w", out.String(), err)
						}
						inProc[mode] = append(inProc[mode], time.Duration(ns))
						left, _ := os.ReadDir(filepath.Join(dir, "netns"))
						if len(left) > 0 {
							return fmt.Errorf("%s left %d namespaces", mode, len(left))
						}
						return nil
					},
				}, nil
			},
		}
	}
	return []*Row{{
		Name: "network endpoint create+delete",
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if os.Geteuid() != 0 {
				return Setup{}, fmt.Errorf("the endpoint row needs root (network namespaces, bridges, iptables)")
			}
			plugins = filepath.Join(env.Root, "bin", "cni", cniPluginsVersion)
			for _, p := range []string{"bridge", "host-local", "firewall", "tuning", "portmap", "bandwidth"} {
				if _, err := os.Stat(filepath.Join(plugins, p)); err != nil {
					return Setup{}, fmt.Errorf("CNI plugin %s missing (run scripts/install-go-peers.sh): %w", p, err)
				}
			}
			var err error
			if tool, err = buildBenchTool(ctx, env, "endpointcycle"); err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("a nat network (bridge, host-local, firewall, tuning, portmap, bandwidth; CNI plugins %s) made untimed per run; %d endpoint create+delete cycles per run", cniPluginsVersion, cycles),
				Notes: []string{"wall times include the helper's start-up and the network's setup and removal (both sides alike); the notes give the median cycle alone"},
			}, nil
		},
		Peer: side("peer"),
		Ours: side("ours"),
		Verdict: func(res *Result) []string {
			p, o := medianDuration(inProc["peer"]), medianDuration(inProc["ours"])
			notes := []string{fmt.Sprintf("one create+delete cycle, median: peer %s, ours %s", fmtMillis(p), fmtMillis(o))}
			if p > 0 && o > 0 {
				r := float64(o) / float64(p)
				met := "met"
				if r > endpointGoal {
					met = "NOT met"
				}
				notes = append(notes, fmt.Sprintf("goal: ours ≤ %.1f× the direct libcni calls: %s (%.2f×)", endpointGoal, met, r))
			}
			return notes
		},
	}}
}
