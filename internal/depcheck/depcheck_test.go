package depcheck

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/hostcompute/hostcompute"

// allowed lists, per package, the non-standard-library packages it may depend on,
// directly or not. Project packages are named without the module prefix.
var allowed = map[string][]string{
	"pkg/guid":      {},
	"pkg/tarstream": {"golang.org/x/sys/"},
	"pkg/winfile":   {"pkg/guid"},
	"pkg/vhd":       {"pkg/guid", "golang.org/x/sys/"},
	"pkg/dmverity":  {"pkg/guid"},
	"pkg/cimfs":     {"pkg/guid", "pkg/winfile", "pkg/internal/writeback", "golang.org/x/sys/"},
	// pkg/internal holds the format packages' shared helpers (the validators'
	// name table, the small-file workers): formats tier, standard library only.
	"pkg/internal/nametab":   {},
	"pkg/internal/filejobs":  {"golang.org/x/sys/"},
	"pkg/internal/writeback": {"golang.org/x/sys/"},
	// The tar codec (pkg/tarstream) serves every path that reads or writes a tar.
	"pkg/ocilayer":   {"pkg/tarstream", "pkg/internal/", "golang.org/x/sys/"},
	"pkg/ext4":       {"pkg/ocilayer", "pkg/tarstream", "pkg/internal/", "golang.org/x/sys/"},
	"pkg/winlayer":   {"pkg/guid", "pkg/winfile", "pkg/internal/", "golang.org/x/sys/", "go.etcd.io/bbolt/"},
	"pkg/ociwclayer": {"pkg/guid", "pkg/winfile", "pkg/winlayer", "pkg/tarstream", "pkg/internal/", "golang.org/x/sys/", "go.etcd.io/bbolt/"},
	"wclayer":        {"host", "pkg/", "golang.org/x/sys/", "go.etcd.io/bbolt/", "internal/", "github.com/hanwen/go-fuse/"},
	"computestorage": {"host", "pkg/", "wclayer", "golang.org/x/sys/", "go.etcd.io/bbolt/", "internal/", "github.com/hanwen/go-fuse/"},
	"internal/mount": {"internal/mountinfo", "internal/loop", "internal/diskfs", "golang.org/x/sys/"},
	"layers":         {"host", "internal/state", "internal/atomicfile", "pkg/", "internal/mount", "internal/wcowunion", "internal/basedisk", "internal/loop", "internal/attach", "internal/fusefs", "internal/mountinfo", "internal/diskfs", "internal/cimview", "wclayer", "wclayer/cim", "golang.org/x/sys/", "go.etcd.io/bbolt/", "github.com/hanwen/go-fuse/"},

	"internal/mountinfo":  {},
	"internal/atomicfile": {},
	"internal/staging":    {},
	"internal/state":      {"internal/atomicfile", "golang.org/x/sys/"},
	"host":                {"pkg/", "internal/", "golang.org/x/sys/", "go.etcd.io/bbolt/", "github.com/hanwen/go-fuse/"},
	"compute": {"pkg/", "internal/", "host", "golang.org/x/sys/", "go.etcd.io/bbolt/", "github.com/hanwen/go-fuse/",
		"github.com/containerd/go-runc", "github.com/containerd/console", "github.com/opencontainers/runtime-spec/"},

	// The network engine: libcni and the plugins' namespace helpers, netlink and
	// iptables; of the project's own packages only the mount executor and GUIDs.
	"hns": {"pkg/guid", "internal/mount", "internal/loop", "internal/diskfs", "internal/mountinfo", "internal/state", "internal/atomicfile", "golang.org/x/sys/", "github.com/containernetworking/cni/", "github.com/containernetworking/plugins/pkg/ns", "github.com/coreos/go-iptables/", "github.com/vishvananda/", "go.opentelemetry.io/otel/", "github.com/cespare/xxhash/"},
	// Images: go-containerregistry and what it brings (the Docker config file
	// keychain, stargz and tar-split for its layer types).
	"image": {"pkg/", "internal/", "store", "host", "golang.org/x/sys/", "golang.org/x/sync/", "go.etcd.io/bbolt/",
		"github.com/klauspost/compress/", "github.com/google/go-containerregistry/", "github.com/docker/cli/",
		"github.com/docker/distribution/", "github.com/docker/docker-credential-helpers/", "github.com/containerd/stargz-snapshotter/",
		"github.com/mitchellh/go-homedir", "github.com/opencontainers/go-digest", "github.com/opencontainers/image-spec/",
		"github.com/sirupsen/logrus", "github.com/vbatts/tar-split/",
		// Through pkg/ociwclayer/cim, whose CIM layer writer is wclayer/cim's today
		// (the one arrow that points up; it brings the CIM mount code along).
		"wclayer/cim", "github.com/hanwen/go-fuse/"},
	"internal/registrytest": {"internal/proctest", "golang.org/x/sys/", "golang.org/x/crypto/"},
	// The engine: formats, mechanisms and bbolt; never the seed APIs, never
	// containerd (its snapshot suite is a test dependency only).
	"store": {"pkg/", "internal/", "host", "golang.org/x/sys/", "go.etcd.io/bbolt/", "github.com/klauspost/compress/", "github.com/hanwen/go-fuse/"},
}

func TestDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found:", err)
	}
	for pkg, allow := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard", module+"/"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var p struct {
				ImportPath string
				Standard   bool
			}
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Standard || p.ImportPath == module+"/"+pkg {
				continue
			}
			dep := strings.TrimPrefix(p.ImportPath, module+"/")
			ok := false
			for _, a := range allow {
				if dep == a || dep+"/" == a || strings.HasSuffix(a, "/") && strings.HasPrefix(dep, a) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s depends on %s, which DESIGN.md's layering does not allow", pkg, p.ImportPath)
			}
		}
	}
}
