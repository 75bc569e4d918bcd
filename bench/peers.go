package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// need makes sure the peer program bin is installed. When it is missing and bench runs
// as root, it installs the Debian package pkg with apt-get; otherwise it says how to.
func (env *Env) need(ctx context.Context, bin, pkg string) error {
	if _, err := exec.LookPath(bin); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is not installed; install it with: sudo apt-get install -y %s", bin, pkg)
	}
	env.logf("%s is not installed: running apt-get install -y %s", bin, pkg)
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = env.log, env.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get install -y %s: %w", pkg, err)
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%s still missing after installing %s: %w", bin, pkg, err)
	}
	return nil
}

// needGNUTar makes sure tar is GNU tar: the import and export rows use its options.
func (env *Env) needGNUTar(ctx context.Context) error {
	if err := env.need(ctx, "tar", "tar"); err != nil {
		return err
	}
	if v := toolVersion(ctx, "tar"); !strings.Contains(v, "GNU tar") {
		return fmt.Errorf("tar is not GNU tar (%q); install it with: apt-get install -y tar", v)
	}
	return nil
}

// needGNUTime makes sure time is GNU time, which measures peak RSS for the runner,
// and returns its path.
func (env *Env) needGNUTime(ctx context.Context) (string, error) {
	if err := env.need(ctx, "time", "time"); err != nil {
		return "", err
	}
	if v := toolVersion(ctx, "time"); !strings.Contains(v, "GNU Time") {
		return "", fmt.Errorf("time is not GNU time (%q); install it with: apt-get install -y time", v)
	}
	return exec.LookPath("time")
}

// toolVersion returns the first line of "bin --version", or "" if that fails.
func toolVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
