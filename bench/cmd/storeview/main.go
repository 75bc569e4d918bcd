// Command storeview makes one store layer and mounts it, or opens a store, for
// bench's store rows, and prints how long that took, so that the rows can report
// the operation apart from process start-up, which both sides pay alike.
//
// Usage:
//
//	storeview -mode ours -op prepare|view -store DIR -parent KEY -key KEY -target DIR [-steady N] [-fresh N]
//	storeview -mode peer -op prepare|view -lowers FILE -upper DIR -work DIR -target DIR [-steady N] [-fresh N]
//	storeview -mode ours|peer -op open -store DIR
//
// With -fresh N (prepare and view), the command runs itself N times, each a new
// process timing its first call, and prints their median (see runFresh).
//
// With -steady N, N more calls follow in the same process, each after
// unmounting the previous one (untimed), and their median is printed as
// steady_ns: the cost in a long-running process, such as a snapshotter
// service, where the first call's is that of a command.
//
// Mode ours times store.Prepare (or View) of key over parent plus mounting the
// returned mounts at target through the host engine's executor; the mount is
// left in place. Mode peer times a bare mount(2) of the same lower directories
// (listed in FILE, topmost first): an overlay with an option string (relative
// paths after chdir to their common parent when absolute ones overflow a page),
// or for a view of one layer a read-only bind mount. For prepare the peer's
// timed call also makes the union's upper and work directories (DIR/u and
// DIR/w), as ours makes its layer's. For -op open, ours times
// store.Open (which reconciles the store) and peer opening meta.db read-only with
// bbolt and decoding every record's key, the least any open that looks at the
// records does.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/store"
)

const pageSize = 4096

func main() {
	mode := flag.String("mode", "", "ours or peer")
	op := flag.String("op", "", "prepare, view or open")
	root := flag.String("store", "", "store root")
	parent := flag.String("parent", "", "parent key")
	key := flag.String("key", "", "key of the new layer")
	target := flag.String("target", "", "mount point")
	lowersFile := flag.String("lowers", "", "file listing the lower directories, topmost first")
	upper := flag.String("upper", "", "upper directory (peer prepare)")
	work := flag.String("work", "", "work directory (peer prepare)")
	steady := flag.Int("steady", 0, "after the first call, make this many more in the same process (each unmounted again, untimed) and print their median as steady_ns")
	fresh := flag.Int("fresh", 1, "time the first call of this many processes, each a new one, and print their median as op_ns (prepare and view)")
	flag.Parse()
	if *fresh > 1 && *op != "open" {
		if err := runFresh(*fresh, *key, *target, *upper, *work); err != nil {
			fmt.Fprintf(os.Stderr, "storeview: %s %s: %v\n", *mode, *op, err)
			os.Exit(1)
		}
		return
	}
	again = *steady
	took, paths, err := run(*mode, *op, *root, *parent, *key, *target, *lowersFile, *upper, *work)
	if err != nil {
		fmt.Fprintf(os.Stderr, "storeview: %s %s: %v\n", *mode, *op, err)
		os.Exit(1)
	}
	fmt.Printf("op_ns=%d paths=%s steady_ns=%d\n", took.Nanoseconds(), paths, median(steadyTimes).Nanoseconds())
}

// runFresh runs this command n times, one after another, each a new process
// with the same flags but -fresh: the first call of a process pays for what a
// long-running one has warm (code, heap, threads), and its time varies from one
// process to the next more than a median of several does. Each child makes a
// layer of its own (key-<i>) and, for the peer's prepare, its own upper and
// work directories under upper and work; its mount is taken down (untimed)
// before the next one starts, and the last one stays. Only the first child
// makes the -steady calls. It prints the median of the children's op_ns.
func runFresh(n int, key, target, upper, work string) error {
	var firsts []time.Duration
	var paths string
	var steadyNs int64
	for i := range n {
		set := map[string]string{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
		delete(set, "fresh")
		set["key"] = fmt.Sprintf("%s-%d", key, i)
		if i > 0 {
			set["steady"] = "0"
		}
		if upper != "" {
			u, w := filepath.Join(upper, strconv.Itoa(i)), filepath.Join(work, strconv.Itoa(i))
			for _, d := range []string{u, w} {
				if err := os.Mkdir(d, 0o755); err != nil {
					return err
				}
			}
			set["upper"], set["work"] = u, w
		}
		var args []string
		for name, v := range set {
			args = append(args, "-"+name+"="+v)
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("process %d of %d: %w", i+1, n, err)
		}
		var ns, sns int64
		var p string
		if _, err := fmt.Sscanf(string(out), "op_ns=%d paths=%s steady_ns=%d", &ns, &p, &sns); err != nil {
			return fmt.Errorf("process %d of %d printed %q: %w", i+1, n, out, err)
		}
		firsts = append(firsts, time.Duration(ns))
		if i == 0 {
			paths, steadyNs = p, sns
		}
		if i < n-1 {
			if err := unix.Unmount(target, 0); err != nil {
				return fmt.Errorf("unmounting %s between processes: %w", target, err)
			}
		}
	}
	fmt.Printf("op_ns=%d paths=%s steady_ns=%d\n", median(firsts).Nanoseconds(), paths, steadyNs)
	return nil
}

// again is how many calls follow the first; steadyTimes are their times.
var (
	again       int
	steadyTimes []time.Duration
)

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// repeat runs call again times after unmounting target each time, untimed, and
// keeps the time of each call.
func repeat(target string, call func(i int) (time.Duration, error)) error {
	for i := range again {
		if err := unix.Unmount(target, 0); err != nil {
			return fmt.Errorf("unmounting %s between calls: %w", target, err)
		}
		d, err := call(i)
		if err != nil {
			return err
		}
		steadyTimes = append(steadyTimes, d)
	}
	return nil
}

func run(mode, op, root, parent, key, target, lowersFile, upper, work string) (time.Duration, string, error) {
	ctx := context.Background()
	switch mode + " " + op {
	case "ours open":
		start := time.Now()
		s, err := store.Open(ctx, root)
		took := time.Since(start)
		if err == nil {
			s.Close()
		}
		return took, "-", err
	case "peer open":
		start := time.Now()
		db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			return 0, "", err
		}
		n := 0
		err = db.View(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("v1")).Bucket([]byte("layers")).ForEach(func(k, v []byte) error {
				var r struct{ Key string }
				n++
				return json.Unmarshal(v, &r)
			})
		})
		db.Close()
		return time.Since(start), fmt.Sprint(n), err
	case "ours prepare", "ours view":
		s, err := store.Open(ctx, root)
		if err != nil {
			return 0, "", err
		}
		defer s.Close()
		call := func(key string) (time.Duration, error) {
			start := time.Now()
			var ms []store.Mount
			var err error
			if op == "prepare" {
				ms, err = s.Prepare(ctx, key, parent)
			} else {
				ms, err = s.View(ctx, key, parent)
			}
			if err == nil {
				_, err = store.MountAll(ctx, ms, target)
			}
			return time.Since(start), err
		}
		took, err := call(key)
		if err == nil {
			err = repeat(target, func(i int) (time.Duration, error) { return call(fmt.Sprintf("%s-steady-%d", key, i)) })
		}
		return took, "executor", err
	case "peer prepare", "peer view":
		b, err := os.ReadFile(lowersFile)
		if err != nil {
			return 0, "", err
		}
		lowers := strings.Fields(string(b))
		if op == "view" && len(lowers) == 1 {
			call := func(int) (time.Duration, error) {
				start := time.Now()
				err := unix.Mount(lowers[0], target, "", unix.MS_BIND, "")
				if err == nil {
					err = unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
				}
				return time.Since(start), err
			}
			took, err := call(0)
			if err == nil {
				err = repeat(target, call)
			}
			return took, "absolute", err
		}
		// A writable union needs an upper and a work directory of its own, which
		// ours makes in its timed call (the layer's fs/ and work/): so does the
		// peer, under upper and work, named the same in every call.
		opts := func(ls []string) string {
			o := "lowerdir=" + strings.Join(ls, ":")
			if op == "prepare" {
				o += ",upperdir=" + upper + "/u,workdir=" + work + "/w"
			}
			return o
		}
		data, paths := opts(lowers), "absolute"
		if len(data) >= pageSize {
			// The layers are <store>/layers/<id>/fs: relative to layers/.
			base := filepath.Dir(filepath.Dir(lowers[0]))
			rel := make([]string, len(lowers))
			for i, l := range lowers {
				rel[i] = strings.TrimPrefix(l, base+"/")
			}
			if err := os.Chdir(base); err != nil {
				return 0, "", err
			}
			data, paths = opts(rel), "relative"
		}
		if len(data) >= pageSize {
			return 0, "", fmt.Errorf("option string of %d bytes does not fit in a page even with relative paths", len(data))
		}
		flags := uintptr(0)
		if op == "view" {
			flags = unix.MS_RDONLY
		}
		n := 0
		call := func(int) (time.Duration, error) {
			if op == "prepare" && n > 0 {
				// Each call's directories are new, as ours are (untimed).
				for _, d := range []string{upper, work} {
					if err := os.Rename(d, d+".old"+strconv.Itoa(n)); err != nil {
						return 0, err
					}
					if err := os.Mkdir(d, 0o755); err != nil {
						return 0, err
					}
				}
			}
			n++
			start := time.Now()
			if op == "prepare" {
				if err := os.Mkdir(upper+"/u", 0o755); err != nil {
					return 0, err
				}
				if err := os.Mkdir(work+"/w", 0o755); err != nil {
					return 0, err
				}
			}
			err := unix.Mount("bench", target, "overlay", flags, data)
			return time.Since(start), err
		}
		took, err := call(0)
		if err == nil {
			err = repeat(target, call)
		}
		return took, paths, err
	}
	return 0, "", fmt.Errorf("want -mode ours|peer and -op prepare|view|open")
}
