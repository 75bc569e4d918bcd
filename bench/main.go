// Command bench runs hostcompute beside the peer tools it replaces, on the same inputs
// in the same run, and prints a markdown table of paired medians and their ratios.
//
// Usage, from the repository root:
//
//	go run ./bench [-quick] [-n pairs] [-seed n] [-run regexp] [-work dir] [-cache dir]
//
// The table goes to stdout and to bench/_out/results.md; progress goes to stderr. See
// bench/README.md for what each row measures and how to read the ratios.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// modulePath identifies the repository root when bench looks for it.
const modulePath = "github.com/hostcompute/hostcompute"

// registry lists the row constructors in table order. A constructor gets the
// environment (quick mode, seed) and returns its rows; later capabilities (ext4
// images, VHDX conversion, CIM builds, FUSE reads) add their constructor here.
var registry = []func(env *Env) []*Row{
	wclayerRows,
	vhdRows,
	mountRows,
	ext4Rows,
	ocilayerRows,
	cimRows,
	cimStreamRows,
	imageConvertRows,
	cimTreeRows,
	hnsRows,
	imageRows,
	storeRows,
	containerRows,
}

// Env is what rows get from the harness: where to put files, which binaries to run,
// and the run parameters.
type Env struct {
	Root  string // repository root
	Work  string // this invocation's work directory, removed at the end
	Cache string // generated inputs, kept between invocations
	HCS   string // hcs binary under test
	Time  string // GNU time, which measures the peak RSS of every timed command
	Seed  uint64 // seed of every generated input
	Pairs int    // paired runs per row
	Quick bool   // smaller inputs for a smoke run

	// Cooldown says that the work filesystem is ext4 without a journal, where files
	// are slow to create for a minute after others were deleted.
	Cooldown bool
	// Prefault says that the hypervisor takes free memory back (free page
	// reporting), so the runner makes free memory resident before each run.
	Prefault bool
	// HeldMemory says that free page reporting is stopped for the bench's run
	// (holdFreeMemory), so resident free memory stays resident.
	HeldMemory bool

	log         io.Writer // progress
	lastDelete  time.Time // when bench last deleted files on the work disk
	deleteStamp string    // file keeping lastDelete between invocations
	fixtures    map[string]bool
	rootfsWin   *cimInput // the Debian root file system as a Windows layer, shared by its rows
}

// logf prints a progress line to stderr.
func (env *Env) logf(format string, args ...any) {
	fmt.Fprintf(env.log, "bench: "+format+"\n", args...)
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		quick  = flag.Bool("quick", false, "smoke run: 2 pairs and smaller inputs")
		pairs  = flag.Int("n", 5, "paired runs (peer, ours) per row; -quick makes the default 2")
		seed   = flag.Uint64("seed", 1, "seed of the generated inputs")
		work   = flag.String("work", "", "work directory, on the disk to measure (default <repo>/bench/_out/work)")
		cache  = flag.String("cache", "", "cache of generated inputs (default <repo>/bench/_out/cache)")
		out    = flag.String("out", "", "results file (default <repo>/bench/_out/results.md; \"-\" for none)")
		hcs    = flag.String("hcs", "", "use this hcs binary instead of building ./cmd/hcs")
		goTool = flag.String("go", "go", "go command used to build ./cmd/hcs")
		only   = flag.String("run", "", "run only the rows whose name matches this regular expression")
		list   = flag.Bool("list", false, "list the rows and exit")
		keep   = flag.Bool("keep", false, "keep the work directory")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		return 2
	}
	pairsSet := false
	flag.Visit(func(f *flag.Flag) { pairsSet = pairsSet || f.Name == "n" })
	if *quick && !pairsSet {
		*pairs = 2
	}
	if *pairs < 1 {
		fmt.Fprintln(os.Stderr, "bench: -n must be at least 1")
		return 2
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -run: %v\n", err)
			return 2
		}
	}

	if runtime.GOOS != "linux" {
		fmt.Fprintf(os.Stderr, "bench: runs on Linux only, not %s\n", runtime.GOOS)
		return 1
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	env := &Env{Root: root, Seed: *seed, Pairs: *pairs, Quick: *quick, log: os.Stderr}
	var rows []*Row
	for _, mk := range registry {
		for _, r := range mk(env) {
			if filter == nil || filter.MatchString(r.Name) {
				rows = append(rows, r)
			}
		}
	}
	if *list {
		for _, r := range rows {
			fmt.Printf("%s\n\tpeer: %s\n\tours: %s\n", r.Name, r.Peer.Name, r.Ours.Name)
		}
		return 0
	}
	if len(rows) == 0 {
		fmt.Fprintf(os.Stderr, "bench: no row matches -run %q\n", *only)
		return 2
	}

	// The first Ctrl-C (or SIGTERM) cancels ctx: the running command is stopped, the
	// work directory removed and the rows done so far reported. A second one kills.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		signal.Stop(sigs)
		env.logf("%v: stopping the running command and cleaning up (again to abort)", s)
		cancel()
	}()

	workBase := orDefault(*work, filepath.Join(root, "bench", "_out", "work"))
	env.Cache, err = filepath.Abs(orDefault(*cache, filepath.Join(root, "bench", "_out", "cache")))
	if err == nil {
		env.Work, err = env.newWorkDir(workBase)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	env.Cooldown = ext4WithoutJournal(env.Work)
	env.Prefault = freePageReporting()
	if env.Prefault {
		// The balloon takes free memory back and makes every page handed out
		// again cost a fault in the hypervisor: stop it while the bench runs.
		if err := os.MkdirAll(env.Cache, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		restore, err := holdFreeMemory(env.Cache)
		if err != nil {
			env.logf("free page reporting stays on (%v): figures of rows that write much will vary", err)
		} else {
			env.HeldMemory = true
			defer func() {
				if err := restore(); err != nil {
					env.logf("%v", err)
				}
			}()
		}
	}
	defer func() {
		if *keep {
			env.logf("keeping %s", env.Work)
			return
		}
		if err := os.RemoveAll(env.Work); err != nil {
			env.logf("removing work directory: %v", err)
		}
		env.deleted()
	}()

	if err := os.MkdirAll(env.Cache, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if env.Time, err = env.needGNUTime(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if *hcs != "" {
		env.HCS, err = filepath.Abs(*hcs)
	} else {
		env.HCS, err = buildHCS(ctx, env, *goTool)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}

	start := time.Now()
	facts := machineFacts(ctx, env)
	var results []*Result
	for i, r := range rows {
		if ctx.Err() != nil {
			break
		}
		env.logf("[%d/%d] %s", i+1, len(rows), r.Name)
		res := runRow(ctx, env, r, i)
		if res.Err != nil {
			env.logf("[%d/%d] %s: %v", i+1, len(rows), r.Name, res.Err)
		}
		results = append(results, res)
	}
	elapsed := time.Since(start)

	var report bytes.Buffer
	writeReport(&report, env, facts, results, elapsed, ctx.Err() != nil)
	os.Stdout.Write(report.Bytes())
	resultsFile := orDefault(*out, filepath.Join(root, "bench", "_out", "results.md"))
	if resultsFile != "-" {
		if err := os.MkdirAll(filepath.Dir(resultsFile), 0o755); err == nil {
			err = os.WriteFile(resultsFile, report.Bytes(), 0o644)
		}
		if err != nil {
			env.logf("writing results: %v", err)
		} else {
			env.logf("results written to %s", resultsFile)
		}
	}
	switch {
	case ctx.Err() != nil:
		return 130
	case failed(results):
		return 1
	}
	return 0
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func failed(results []*Result) bool {
	for _, r := range results {
		if r.Err != nil {
			return true
		}
	}
	return false
}

// repoRoot finds the module root above the current directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			sc.Scan()
			f.Close()
			if strings.TrimSpace(sc.Text()) == "module "+modulePath {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for %s above the current directory: run bench from the repository", modulePath)
		}
		dir = parent
	}
}

// workMarker marks a directory as made by bench, so that a later invocation may remove
// it after an aborted run.
const workMarker = ".hcs-bench"

// newWorkDir makes a fresh directory for this invocation under base, removing the ones
// earlier invocations left behind (those holding workMarker) and nothing else.
func (env *Env) newWorkDir(base string) (string, error) {
	base, err := filepath.Abs(base)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	env.deleteStamp = filepath.Join(base, ".last-delete")
	env.loadDeleted()
	if old, _ := filepath.Glob(filepath.Join(base, "run-*")); len(old) > 0 {
		for _, d := range old {
			if _, err := os.Stat(filepath.Join(d, workMarker)); err == nil {
				env.logf("removing %s, left by an earlier run", d)
				os.RemoveAll(d)
			}
		}
		syncAll()
		env.deleted()
	}
	dir, err := os.MkdirTemp(base, "run-")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, workMarker), nil, 0o644)
}

// buildHCS builds ./cmd/hcs into the work directory.
func buildHCS(ctx context.Context, env *Env, goTool string) (string, error) {
	bin := filepath.Join(env.Work, "bin", "hcs")
	env.logf("building ./cmd/hcs")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/hcs")
	// As the Makefile builds it: static, without cgo.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = env.Root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building ./cmd/hcs: %w", err)
	}
	return bin, nil
}
