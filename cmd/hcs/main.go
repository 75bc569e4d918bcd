package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/compute"
	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/progress"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3"; without it the
// module version from the build information is used.
var version string

// Keys of structured log records.
const (
	logKeyLayer       = "layer"
	logKeyFile        = "file"
	logKeyCompression = "compression"
	logKeyBytes       = "bytes"
	logKeyElapsed     = "elapsed"
	logKeyParents     = "parents"
	logKeyError       = "error"
)

// Output formats of --output.
const (
	outputText  = "text"
	outputTable = "table" // synonym of text
	outputJSON  = "json"
)

func main() {
	// A re-executed copy of this program serving a FUSE file system (the raw
	// view of hcs vhd attach) never returns from here.
	host.MaybeRunHelper()
	// ... or the monitor of a container (hcs run, hcs container create).
	compute.MaybeRunHelper()
	args := os.Args[1:]
	worker := os.Getenv(workerEnv) != ""
	if worker {
		// This process is the worker of a long command (see supervise.go).
		os.Unsetenv(workerEnv)
		syscall.CloseOnExec(3)
		workerPipe = os.NewFile(3, "staging")
	} else if isLongCommand(args) {
		os.Exit(supervise(args))
	}
	ctx, stop := workerSignals(worker)
	// Writes to a closed pipe fail with EPIPE instead of killing the process, so that
	// commands can report them, or end quietly as inspect does.
	signal.Ignore(syscall.SIGPIPE)
	a := newApp(os.Stdin, os.Stdout, os.Stderr)
	stopProfile := startProfile()
	code := a.execute(ctx, args)
	stopProfile()
	writeHeapProfile()
	stop()
	os.Exit(code)
}

// startProfile writes a CPU profile of this process to the file that
// $HOSTCOMPUTE_CPUPROFILE names (for the engineers; a long command's worker
// process writes FILE.worker, and "%p" in the name becomes the process ID, so
// that a script running many commands keeps each one's profile): it returns
// the function that ends it.
func startProfile() func() {
	path := profilePath("HOSTCOMPUTE_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcs: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "hcs: cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// profilePath is the profile file the environment variable env names, ""
// when it is unset: "%p" becomes the process ID, and a long command's worker
// process adds ".worker".
func profilePath(env string) string {
	path := os.Getenv(env)
	if path == "" {
		return ""
	}
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	if workerPipe != nil {
		path += ".worker"
	}
	return path
}

// streamingGC lets the heap of a streaming build (cim create, tar2ext4) grow
// by half its live size between collections rather than by all of it, unless
// $GOGC says otherwise: their live heap is a steady working set, so the
// collector's extra runs are cheap. A CIM build of a 4 GiB layer of 208,000
// files (bench's streamed row, by hand): peak RSS 73.8 → 59.3 MiB, 21.5 → 21.0 s;
// tar2ext4 of a Linux layer of the same shape: 172.7 → 161.6 MiB.
func streamingGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}

// writeHeapProfile writes the heap profile of this process (as of its last
// garbage collection) to the file $HOSTCOMPUTE_MEMPROFILE names, with the
// same naming as startProfile's, when the command ends.
func writeHeapProfile() {
	path := profilePath("HOSTCOMPUTE_MEMPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err == nil {
		err = errors.Join(pprof.WriteHeapProfile(f), f.Close())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcs: heap profile:", err)
	}
}

// app holds the streams and global flags shared by all commands.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger

	output string // --output
	quiet  bool   // --quiet
	debug  bool   // --debug

	// forceProgress draws the progress line even when stderr is not a terminal.
	forceProgress bool
	// running is set once a command's own code runs; errors before that come from
	// parsing the command line.
	running bool
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, log: slog.New(slog.DiscardHandler)}
}

// execute runs the command line args and returns the exit code. Errors are written
// to stderr as "hcs: <message>".
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.newRootCommand() // sets the flags' defaults
	args = a.globalFlagsBefore(args, "tar2ext4")
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if st, ok := errors.AsType[processExit](err); ok {
		return int(st) // an attached process's exit status, already reported by it
	}
	if !a.running {
		err = usageError{err}
	}
	code := exitCode(ctx, err)
	if code == exitInterrupted {
		a.log.Debug("interrupted", logKeyError, err)
		err = errors.New("interrupted")
	}
	if !errors.As(err, new(reportedError)) {
		fmt.Fprintf(a.stderr, "hcs: %v\n", err)
	}
	if code == exitUsage {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// globalFlagsBefore applies the global flags given before the command word
// cmd and drops them from args: cmd parses its own flags (tar2ext4 keeps
// hcsshim's single-dash flags, where -o names the image), so "hcs -o json
// tar2ext4 ..." would otherwise lose them.
func (a *app) globalFlagsBefore(args []string, cmd string) []string {
	w := commandWords(args)
	if len(w) == 0 || w[0] != cmd {
		return args
	}
	i := slices.Index(args, cmd)
	for j := 0; j < i; j++ {
		switch f := args[j]; {
		case (f == "-o" || f == "--output") && j+1 < i:
			a.output = args[j+1]
			j++
		case strings.HasPrefix(f, "--output="):
			a.output = strings.TrimPrefix(f, "--output=")
		case strings.HasPrefix(f, "-o") && len(f) > 2:
			a.output = strings.TrimPrefix(strings.TrimPrefix(f, "-o"), "=")
		case f == "-q" || f == "--quiet":
			a.quiet = true
		case f == "--debug":
			a.debug = true
		default:
			return args // something else: let cobra report it
		}
	}
	return args[i:]
}

func (a *app) newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hcs",
		Short: "Host Compute Service storage and compute, native on Linux",
		Long: `hcs manages container storage on Linux the way the Windows Host Compute Service
does: Windows layers as folders or CimFS images, imported from and exported to OCI
Windows layer tars; scratch layers on VHD and VHDX disks, attached as block devices
and unioned over their parents with overlayfs; Linux layers as ext4 images
(tar2ext4) or directories, mounted as container roots.

Results go to standard output as text, or as one JSON document with -o json.
Errors go to standard error as "hcs: <message>".

` + exitCodesHelp,
		Version:           versionString(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.setup,
	}
	root.SetVersionTemplate("hcs {{.Version}}\n")
	f := root.PersistentFlags()
	f.StringVarP(&a.output, "output", "o", outputText, "print results in `FORMAT`: text or json (table is the same as text)")
	f.BoolVarP(&a.quiet, "quiet", "q", false, "no progress bar and no text summary")
	f.BoolVar(&a.debug, "debug", false, "log debugging information to standard error")
	root.AddCommand(a.newLayerCommand())
	root.AddCommand(a.newVHDCommand())
	root.AddCommand(a.newOCILayerCommand())
	root.AddCommand(a.newCIMCommand())
	root.AddCommand(a.newTar2Ext4Command())
	root.AddCommand(a.newStoreCommand())
	root.AddCommand(a.newImageCommand())
	root.AddCommand(a.newNetworkCommand(), a.newEndpointCommand())
	root.AddCommand(a.newContainerCommand(), a.newRunCommand())
	return root
}

// setup applies the global flags before any command runs.
func (a *app) setup(cmd *cobra.Command, args []string) error {
	switch a.output {
	case outputText, outputTable, outputJSON:
	default:
		return usageErrorf("invalid --output %q: want text, table or json", a.output)
	}
	if a.output == outputTable {
		a.output = outputText
	}
	if a.debug {
		a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// runE marks the start of a command's own code, so that its errors are not taken for
// usage errors.
func (a *app) runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.running = true
		return fn(cmd, args)
	}
}

// result writes the outcome of a command: text unless -o json, which writes v as JSON.
// --quiet drops the text.
func (a *app) result(text string, v any) error {
	if a.output == outputJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	if a.quiet {
		return nil
	}
	_, err := fmt.Fprintln(a.stdout, text)
	return err
}

// warn writes each error joined in err to stderr as a warning, and returns
// their messages.
func (a *app) warn(err error) []string {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var msgs []string
	for _, e := range errs {
		fmt.Fprintf(a.stderr, "hcs: warning: %v\n", e)
		msgs = append(msgs, e.Error())
	}
	return msgs
}

// progress starts a progress line on stderr, drawn only when stderr is a terminal and
// --quiet is not given.
func (a *app) progress(label string, total int64) *progress.Bar {
	out := a.stderr
	if a.quiet {
		out = io.Discard
	}
	bar := progress.Start(out, progress.Config{Label: label, Total: total, Force: a.forceProgress && !a.quiet})
	a.log.Debug("progress line", "label", label, "drawn", bar.Enabled(), logKeyBytes, total)
	return bar
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// seconds formats an elapsed time for a summary line: "3.1s", "250ms".
func seconds(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
