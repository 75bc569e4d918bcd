package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// rootfsVersion names the tar writer of the root filesystem inputs; change it when
// writeTreeTar changes, so that cached tars are made again.
const rootfsVersion = "v1"

// rootfsInput is a Linux root filesystem tar in the cache, with what it holds.
type rootfsInput struct {
	sampleInput
	Source  string `json:"source"`  // how the tree was made
	Devices int    `json:"devices"` // character and block devices, fifos
}

func (in *rootfsInput) String() string {
	return fmt.Sprintf("%s (%s): %s; %d entries: %d files, %d directories, %d symlinks, %d hard links; %s of data",
		filepath.Base(in.Path), sizeIEC(in.Size), in.Source, in.Entries, in.Files, in.Dirs, in.Symlinks, in.Links, sizeIEC(in.Data))
}

// linuxRootfs returns the root filesystem tar the Linux layer rows use, making it
// into the cache on first use: with -quick a busybox-static tree (a few MB), else a
// Debian minbase system made by debootstrap from the suite and mirror apt uses here.
func (env *Env) linuxRootfs(ctx context.Context) (*rootfsInput, error) {
	if env.Quick {
		return env.cachedRootfs(ctx, "rootfs-busybox", "busybox-static's busybox and its applet links", env.busyboxTree)
	}
	suite, mirror := aptSource()
	name := fmt.Sprintf("rootfs-debian-%s-minbase", suite)
	source := fmt.Sprintf("debootstrap --variant=minbase %s %s (dev, proc and sys emptied)", suite, mirror)
	return env.cachedRootfs(ctx, name, source, func(ctx context.Context, dir string) error {
		return env.debootstrap(ctx, suite, mirror, dir)
	})
}

// cachedRootfs returns the cached tar name, or builds the tree with build in a
// temporary directory of the cache and writes it as a tar.
func (env *Env) cachedRootfs(ctx context.Context, name, source string, build func(context.Context, string) error) (*rootfsInput, error) {
	path := filepath.Join(env.Cache, name+"-"+rootfsVersion+".tar")
	meta := strings.TrimSuffix(path, ".tar") + ".json"
	in := &rootfsInput{sampleInput: sampleInput{Path: path}}
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, in) == nil {
		if st, err := os.Stat(path); err == nil && st.Size() == in.Size {
			return in, nil
		}
	}
	start := time.Now()
	tree, err := os.MkdirTemp(env.Cache, name+".tree-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tree)
	env.logf("making %s: %s", filepath.Base(path), source)
	if err := build(ctx, tree); err != nil {
		return nil, err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	defer os.Remove(tmp)
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(&ctxWriter{ctx: ctx, w: f}, 1<<20)
	devices, err := writeTreeTar(tree, bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := scanTar(ctx, tmp, &in.sampleInput); err != nil {
		return nil, fmt.Errorf("reading back %s: %w", tmp, err)
	}
	in.Source, in.Devices = source, devices
	b, _ := json.MarshalIndent(in, "", "\t")
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	env.logf("made %s in %s", in, seconds(time.Since(start)))
	return in, nil
}

// aptSource returns the first suite and mirror of the Debian archive in apt's
// sources (deb822 .sources files or one-line sources.list), bookworm on
// deb.debian.org when none is found.
func aptSource() (suite, mirror string) {
	suite, mirror = "bookworm", "http://deb.debian.org/debian"
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			fields := map[string]string{}
			for _, line := range strings.Split(stanza, "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
					fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			uris, suites := strings.Fields(fields["URIs"]), strings.Fields(fields["Suites"])
			if len(uris) > 0 && len(suites) > 0 && strings.HasSuffix(strings.TrimSuffix(uris[0], "/"), "/debian") {
				return suites[0], uris[0]
			}
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "deb" && strings.HasSuffix(strings.TrimSuffix(f[1], "/"), "/debian") {
				return f[2], f[1]
			}
		}
	}
	return suite, mirror
}

// debootstrap installs a minbase Debian system into dir and empties dev, proc and
// sys, as container images ship them.
func (env *Env) debootstrap(ctx context.Context, suite, mirror, dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("debootstrap needs root: run bench as root, or use -quick (busybox rootfs)")
	}
	if err := env.need(ctx, "debootstrap", "debootstrap"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", suite, dir, mirror)
	var out tailBuffer
	out.max = 8 << 10
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap --variant=minbase %s %s: %w\n%s", suite, mirror, err, out.String())
	}
	for _, d := range []string{"dev", "proc", "sys"} {
		entries, _ := os.ReadDir(filepath.Join(dir, d))
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, d, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// busyboxTree makes a small root filesystem from busybox-static: the binary,
// a link per applet, and the usual top-level directories.
func (env *Env) busyboxTree(ctx context.Context, dir string) error {
	if err := env.need(ctx, "busybox", "busybox-static"); err != nil {
		return err
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "tmp", "root", "var/log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" {
			continue
		}
		if err := os.Symlink("/bin/busybox", filepath.Join(dir, applet)); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
