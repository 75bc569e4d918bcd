package main

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// cimRSSGoal is the most a CIM build may hold resident, whatever its input.
const cimRSSGoal = 64 << 20

// cimStreamRows build a CIM layer from a large generated Windows layer tar that
// arrives through a pipe (mksample | hcs cim create), so that no input is stored:
// the row is about peak memory, which must not grow with the input. The peer
// extracts the same stream with GNU tar (which keeps no tree in memory) and
// syncs; both sides include the generator's time.
func cimStreamRows(env *Env) []*Row {
	files, bytes := 208000, int64(4<<30)
	if env.Quick {
		files, bytes = 13000, 256<<20
	}
	var gen string
	sample := func() string {
		return fmt.Sprintf("%s -seed %d -files %d -bytes %d -large 8", gen, env.Seed, files, bytes)
	}
	shell := func(ctx context.Context, script string) *exec.Cmd {
		return env.command(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
	}
	return []*Row{{
		Name:      fmt.Sprintf("cim build peak RSS, streamed (%s, %s files)", sizeIEC(bytes), countSI(files)),
		ManyFiles: true,
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			var err error
			if gen, err = buildMksample(ctx, env); err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("a generated OCI Windows layer tar (mksample, %s of file data in %d files) through a pipe, never stored", sizeIEC(bytes), files),
				Bytes: bytes,
			}, nil
		},
		Peer: Side{
			Name: "mksample | GNU tar -x + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				return &Run{Cmds: []*exec.Cmd{shell(ctx, fmt.Sprintf("%s | tar %s -xf - -C %s; sync -f %s", sample(), tarQuiet, dir, dir))}}, nil
			},
		},
		Ours: Side{
			Name: "mksample | hcs cim create",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				layer := filepath.Join(dir, "layer")
				return &Run{Cmds: []*exec.Cmd{shell(ctx, fmt.Sprintf("%s | %s cim create --quiet %s", sample(), env.HCS, layer))}}, nil
			},
		},
		Verdict: func(res *Result) []string {
			var peak int64
			for _, s := range res.Ours {
				peak = max(peak, s.MaxRSS)
			}
			if peak == 0 {
				return nil
			}
			verdict := "met"
			if peak > cimRSSGoal {
				verdict = "NOT met"
			}
			return []string{fmt.Sprintf("goal: hcs peak RSS ≤ %s whatever the input size: %s (%s)", sizeIEC(cimRSSGoal), verdict, sizeIEC(peak))}
		},
	}}
}

// buildMksample builds the sample generator into the work directory.
func buildMksample(ctx context.Context, env *Env) (string, error) {
	bin := filepath.Join(env.Work, "bin", "mksample")
	goTool := "go"
	if f := flag.Lookup("go"); f != nil {
		goTool = f.Value.String()
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./internal/cmd/mksample")
	cmd.Dir = env.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ./internal/cmd/mksample: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}
