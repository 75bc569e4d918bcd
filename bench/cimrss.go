package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// streamRSSGoal is the most a CIM build or a tar2ext4 may hold resident, whatever its
// input.
const streamRSSGoal = 64 << 20

// bigRSS says whether the 16 GiB peak-RSS rows run (bench -big): each run streams
// 16 GiB and writes an image of that size, minutes per pair.
var bigRSS = flag.Bool("big", false, "also run the peak-RSS rows of a 16 GiB input (minutes per pair)")

// rssInput is the size of one generated input of the peak-RSS rows.
type rssInput struct {
	files int
	bytes int64
}

func rssInputs(env *Env) []rssInput {
	if env.Quick {
		return []rssInput{{13000, 256 << 20}}
	}
	in := []rssInput{{208000, 4 << 30}}
	if *bigRSS {
		in = append(in, rssInput{832000, 16 << 30})
	}
	return in
}

// cimStreamRows build a CIM layer from a large generated Windows layer tar that
// arrives through a pipe (mksample | hcs cim create), so that no input is stored:
// the row is about peak memory, which must not grow with the input. The peer
// extracts the same stream with GNU tar (which keeps no tree in memory) and
// syncs; both sides include the generator's time. tar2ext4 rows do the same with a
// generated Linux layer tar (bench/cmd/mklinuxtar | hcs tar2ext4), without and
// with dm-verity.
func cimStreamRows(env *Env) []*Row {
	var rows []*Row
	for _, in := range rssInputs(env) {
		rows = append(rows, streamRSSRow(in, "cim build", "mksample | hcs cim create", false,
			func(dir string) string { return "cim create --quiet " + filepath.Join(dir, "layer") }))
	}
	for _, in := range rssInputs(env) {
		for _, verity := range []bool{false, true} {
			name, side, flags := "tar2ext4", "mklinuxtar | hcs tar2ext4", "-q"
			if verity {
				name, side, flags = "tar2ext4 "+tar2ext4VerityFlag, side+" "+tar2ext4VerityFlag, "-q -vhd "+tar2ext4VerityFlag
			}
			if in.bytes > 8<<30 {
				flags += " -max-disk-size 32G" // the default 16G is smaller than the input
			}
			rows = append(rows, streamRSSRow(in, name, side, true, func(dir string) string {
				return fmt.Sprintf("tar2ext4 %s -o %s", flags, filepath.Join(dir, "layer.img"))
			}))
		}
	}
	return rows
}

// consumerRSS is the peak RSS of the command reading a row's pipe, written by
// a GNU time of its own to a file beside the run's directory.
type consumerRSS string

func (c consumerRSS) file() string { return filepath.Clean(string(c)) + ".rss" }

// prefix is what goes before the consumer's command in the pipeline.
func (c consumerRSS) prefix(env *Env) string {
	return strings.Join(env.timeArgs(c.file()), " ")
}

// read returns the peak RSS time wrote, in bytes, and removes its file.
func (c consumerRSS) read() (int64, error) {
	defer os.Remove(c.file())
	return readTimeRSS(c.file())
}

// streamRSSRow measures hcs ARGS (hcsArgs of the run's directory) reading a
// generated tar from a pipe: mksample's Windows layer or, with linux,
// mklinuxtar's Linux layer. Every run's output is removed after its pair.
func streamRSSRow(in rssInput, what, ours string, linux bool, hcsArgs func(dir string) string) *Row {
	var gen string
	sample := func(env *Env) string {
		return fmt.Sprintf("%s -seed %d -files %d -bytes %d -large 8", gen, env.Seed, in.files, in.bytes)
	}
	shell := func(ctx context.Context, env *Env, script string) *exec.Cmd {
		return env.command(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
	}
	kind := "OCI Windows layer tar (mksample"
	if linux {
		kind = "OCI Linux layer tar (bench/cmd/mklinuxtar"
	}
	clean := func(dir string) func() error {
		return func() error {
			ents, err := os.ReadDir(dir)
			for _, e := range ents {
				if rerr := os.RemoveAll(filepath.Join(dir, e.Name())); err == nil {
					err = rerr
				}
			}
			return err
		}
	}
	return &Row{
		Name:      fmt.Sprintf("%s peak RSS, streamed (%s, %s files)", what, sizeIEC(in.bytes), countSI(in.files)),
		ManyFiles: true,
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			var err error
			if linux {
				gen, err = env.benchCmd(ctx, "mklinuxtar")
			} else {
				gen, err = buildMksample(ctx, env)
			}
			if err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("a generated %s, %s of file data in %d files) through a pipe, never stored; peak RSS is the reading command's alone (GNU time of its own), not the generator's", kind, sizeIEC(in.bytes), in.files),
				Bytes: in.bytes,
			}, nil
		},
		// The generator's own memory is no side's: each side's peak RSS is its
		// consumer's alone, measured by a GNU time of its own.
		Peer: Side{
			Name: strings.SplitN(ours, " |", 2)[0] + " | GNU tar -x + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				rss := consumerRSS(dir)
				return &Run{Cmds: []*exec.Cmd{shell(ctx, env, fmt.Sprintf("%s | %s tar %s -xf - -C %s; sync -f %s", sample(env), rss.prefix(env), tarQuiet, dir, dir))},
					MaxRSS: rss.read, Cleanup: clean(dir)}, nil
			},
		},
		Ours: Side{
			Name: ours,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				rss := consumerRSS(dir)
				return &Run{Cmds: []*exec.Cmd{shell(ctx, env, fmt.Sprintf("%s | %s %s %s", sample(env), rss.prefix(env), env.HCS, hcsArgs(dir)))},
					MaxRSS: rss.read, Cleanup: clean(dir)}, nil
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
			if peak > streamRSSGoal {
				verdict = "NOT met"
			}
			return []string{fmt.Sprintf("goal: hcs peak RSS ≤ %s whatever the input size: %s (%s)", sizeIEC(streamRSSGoal), verdict, sizeIEC(peak))}
		},
	}
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
