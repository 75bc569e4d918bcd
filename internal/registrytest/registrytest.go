// Package registrytest runs a real OCI registry for tests and benchmarks: Debian's
// docker-registry (the CNCF distribution registry, 2.8) on 127.0.0.1 at a free
// port, with its own configuration file and storage directory, stopped by PID.
// Manifests may name foreign (non-distributable) layers at URLs on 127.0.0.1.
package registrytest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hostcompute/hostcompute/internal/proctest"
)

// Binary is the registry program installed by scripts/install-deps.sh.
const Binary = "docker-registry"

// ErrNotInstalled: the registry program is not on PATH.
var ErrNotInstalled = errors.New("registrytest: docker-registry not installed (scripts/install-deps.sh installs it)")

// Registry is a running registry.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of references to it.
	Host string
	// Dir holds its configuration file, storage and log.
	Dir string
	cmd *exec.Cmd
}

// Start runs a registry whose files live in dir (which must exist), and waits
// until it answers. Stop it with Stop.
func Start(dir string) (*Registry, error) {
	return StartWithAuth(dir, "", "")
}

// StartWithAuth is Start with HTTP basic authentication: user and password (a
// bcrypt htpasswd file in dir) are needed for every request. Empty user means none.
func StartWithAuth(dir, user, password string) (*Registry, error) {
	auth := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: registrytest\n    path: %s\n", htpasswd)
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, ErrNotInstalled
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r, err := start(bin, dir, auth)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin, dir, auth string) (*Registry, error) {
	// A free port: taken by the kernel, released, then given to the registry;
	// if another process takes it meanwhile the registry fails and Start retries.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host := l.Addr().String()
	l.Close()
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
validation:
  manifests:
    urls:
      allow:
        - ^https?://127\.0\.0\.1[:/]
%shttp:
  addr: %s
`, storage, auth, host)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "registry.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &Registry{Host: host, Dir: dir, cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			return nil, fmt.Errorf("registrytest: registry exited: %v: %s", err, b)
		default:
		}
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || auth != "" && resp.StatusCode == http.StatusUnauthorized {
				r.cmd = cmd
				go func() { <-exited }()
				return r, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	proctest.KillWait(cmd.Process.Pid, proctest.Timeout)
	return nil, fmt.Errorf("registrytest: registry at %s did not answer within 20 s", host)
}

// PID is the registry's process ID.
func (r *Registry) PID() int { return r.cmd.Process.Pid }

// Stop kills the registry by its PID and waits until it is gone.
func (r *Registry) Stop() error {
	return proctest.KillWait(r.cmd.Process.Pid, proctest.Timeout)
}
