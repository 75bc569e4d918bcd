package main

// Interrupts of long commands.
//
// A long command (one that stages data: imports, exports, conversions, image
// builds) runs in a worker: a copy of this program started by main with the
// same arguments, standard streams and environment, plus a pipe on which the
// worker names the folders where it stages. main forwards signals to it and
// waits:
//
//   - on the first SIGINT or SIGTERM the worker cancels its context, removes
//     what it staged, prints "hcs: interrupted" and exits 130 (a worker counts
//     only the first signal: a terminal's Ctrl-C reaches both processes, and main
//     forwards it too);
//   - on a second signal main does not wait for that: it kills the worker
//     (SIGKILL), removes from the folders the worker named what dead processes
//     left there (the worker's staging included, now that it is dead), says so,
//     and exits 130.
//
// When main itself is killed, the kernel kills the worker too (Pdeathsig).
//
// The same removal of dead processes' leftovers runs at the start of every
// command that stages into a folder, so what a killed process (kill -9, a
// crash) left is removed by the next run.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/hostcompute/hostcompute/internal/staging"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

// workerEnv marks a worker; its value is the file descriptor of the pipe on
// which the worker names its staging folders.
const workerEnv = "HCS_WORKER_FD"

// longCommands run in a worker.
var longCommands = [][]string{
	{"layer", "import"}, {"layer", "export"},
	{"cim", "create"}, {"cim", "export"},
	{"vhd", "convert"}, {"vhd", "create"},
	{"tar2ext4"},
	{"ocilayer", "apply"}, {"ocilayer", "diff"},
}

// commandWords returns the first two words of args that are neither flags nor
// the value of the global -o/--output flag.
func commandWords(args []string) []string {
	var words []string
	for i := 0; i < len(args) && len(words) < 2; i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(words, args[i+1:min(i+1+2-len(words), len(args))]...)
		case a == "-o" || a == "--output":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			words = append(words, a)
		}
	}
	return words
}

func isLongCommand(args []string) bool {
	w := commandWords(args)
	for _, c := range longCommands {
		if len(w) >= len(c) && slices.Equal(w[:len(c)], c) {
			return true
		}
	}
	return false
}

// signals are the signals that interrupt a command.
var signals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// ownSignals is set by a command that handles the signals after the first
// itself (hcs run forwards them to its container): the default handling does
// not come back for them.
var ownSignals atomic.Bool

// supervise runs args in a worker and returns the exit code.
func supervise(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hcs: %v\n", err)
		return exitFailure
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hcs: %v\n", err)
		return exitFailure
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, signals...)
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), workerEnv+"=3")
	// A worker never outlives main: when main is killed (kill -9), the worker
	// is killed too, and what it staged is left to the next run's removal of
	// dead processes' leftovers, rather than it going on (or failing and
	// undoing) beside the next command.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "hcs: %v\n", err)
		return exitFailure
	}
	w.Close()
	dirs := make(chan []string, 1)
	go func() {
		var d []string
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			d = append(d, sc.Text())
		}
		dirs <- d
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	signalled := 0
	for {
		select {
		case s := <-sig:
			signalled++
			if signalled == 1 {
				cmd.Process.Signal(s)
				continue
			}
			fmt.Fprintln(os.Stderr, "hcs: interrupted again: stopping at once and removing temporary files")
			cmd.Process.Kill()
			<-done
			r.Close()
			cleanStaging(<-dirs)
			return exitInterrupted
		case err := <-done:
			d := <-dirs
			r.Close()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					// Killed by someone else: its staging is a dead process's now.
					fmt.Fprintf(os.Stderr, "hcs: interrupted: the command's process ended by %v; removing its temporary files\n", ws.Signal())
					cleanStaging(d)
					return exitInterrupted
				}
				return ee.ExitCode()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "hcs: %v\n", err)
				return exitFailure
			}
			// Finished before it saw the signal: the result is complete.
			return exitOK
		}
	}
}

// cleanStaging removes from each folder what dead processes staged there, in
// every staging scheme of the project.
func cleanStaging(dirs []string) {
	var empty []string
	for _, d := range dirs {
		kind, dir, _ := strings.Cut(d, " ")
		switch kind {
		case "staging":
			staging.Clean(dir)
		case "winlayer":
			winlayer.CleanStale(dir)
		case "cimfs":
			cimfs.CleanStale(dir)
		case "ocilayer":
			cleanOCIStaging(dir)
		case "emptydir":
			empty = append(empty, dir)
		case "cimlayer":
			removeUncommittedLayer(dir)
		}
	}
	// Folders the worker created for its result, once emptied: removed when
	// nothing was committed into them (innermost first).
	for i := len(empty) - 1; i >= 0; i-- {
		os.Remove(empty[i])
	}
}

// removeUncommittedLayer removes the CIM layer folder dir that a killed
// worker created, when no CIM was committed for it and no writer holds it
// (a writer keeps the folder locked while it writes).
func removeUncommittedLayer(dir string) {
	if wcim.IsCimLayer(dir) {
		return
	}
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return
	}
	os.RemoveAll(dir)
}

// ociStagingPrefix starts the folder ocilayer.ApplyNew stages in, followed by
// its process ID and a dash.
const ociStagingPrefix = ".ocilayer-staging-"

// cleanOCIStaging removes the ocilayer.ApplyNew staging folders in dir whose
// process is gone (the next ApplyNew there does the same).
func cleanOCIStaging(dir string) {
	m, _ := filepath.Glob(filepath.Join(dir, ociStagingPrefix+"*"))
	for _, p := range m {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(p), ociStagingPrefix), "-", 2)[0])
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(p)
		}
	}
}

// workerPipe is where a worker names its staging folders; nil in a normal run.
var workerPipe io.Writer

// stagingIn announces that the command stages in dir with the given scheme
// ("staging", "winlayer", "cimfs"), and removes what dead processes staged
// there with that scheme.
func (a *app) stagingIn(kind, dir string) {
	if dir == "" {
		dir = "."
	}
	dir = absPath(dir)
	if workerPipe != nil {
		fmt.Fprintf(workerPipe, "%s %s\n", kind, dir)
	}
	var removed []string
	switch kind {
	case "staging":
		removed, _ = staging.Clean(dir)
	case "winlayer":
		winlayer.CleanStale(dir)
	case "cimfs":
		cimfs.CleanStale(dir)
	case "ocilayer":
		cleanOCIStaging(dir)
	}
	for _, p := range removed {
		a.log.Debug("removed a dead process's temporary file", logKeyFile, p)
	}
}

// workerSignals makes the context of a worker, or of a command run in this
// process: cancelled by the first signal. A worker ignores later signals
// (main deals with them), also once the command has returned; in a normal run
// the default handling comes back after the first signal, so a second one ends
// the process.
func workerSignals(worker bool) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, signals...)
	go func() {
		if _, ok := <-sig; !ok {
			return
		}
		cancel()
		if !worker {
			if !ownSignals.Load() {
				signal.Reset(signals...)
			}
			return
		}
		for range sig {
		}
	}()
	return ctx, func() {
		if worker {
			// The command is over: a signal from now on must not turn its finished
			// result into a death by signal, which main would report as an interrupt.
			signal.Ignore(signals...)
		}
		signal.Stop(sig)
		cancel()
	}
}
