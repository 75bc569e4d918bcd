package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/hostcompute/hostcompute/internal/cnitest"
)

// runJSON runs one verb with -o json and returns its single document.
func runJSON(t *testing.T, args ...string) any {
	t.Helper()
	r := hcs(t, nil, append([]string{"-o", "json"}, args...)...)
	wantCode(t, r, exitOK)
	var v any
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: not JSON: %v: %q", args, err, r.stdout)
	}
	if dec.More() {
		t.Errorf("%v: more than one JSON document: %q", args, r.stdout)
	}
	return v
}

// TestJSONSchemaStoreImage checks the store, image and container verbs'
// documents against the vocabulary, with an image loaded from an OCI layout
// into a store in a temporary directory.
func TestJSONSchemaStoreImage(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	root := "root" // relative: the documents must still say absolute paths
	if _, err := layout.Write(filepath.Join(dir, "oci"), empty.Index); err != nil {
		t.Fatal(err)
	}
	p, _ := layout.FromPath(filepath.Join(dir, "oci"))
	if err := p.AppendImage(windowsImage(t), layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "sample"})); err != nil {
		t.Fatal(err)
	}
	verbs := [][]string{
		{"image", "--root", root, "load", "--name", "local/sample:1", "oci:oci:sample"},
		{"image", "--root", root, "ls"},
		{"image", "--root", root, "inspect", "local/sample:1"},
		{"image", "--root", root, "tag", "local/sample:1", "local/sample:2"},
		{"image", "--root", root, "save", "local/sample:2", "oci:saved:sample"},
		{"image", "--root", root, "convert", "local/sample:1", "--to", "cim"},
		{"image", "--root", root, "rm", "local/sample:2"},
		{"store", "ls", "--root", root},
		{"store", "check", "--root", root},
		{"store", "gc", "--root", root},
	}
	for _, args := range verbs {
		verb := args[0] + " " + args[3]
		if args[0] == "store" {
			verb = args[0] + " " + args[1]
		}
		checkJSON(t, verb, runJSON(t, args...), verb)
	}
	// store inspect of the image's layer, by the key store ls gives.
	ls, _ := runJSON(t, "store", "ls", "--root", root).([]any)
	if len(ls) == 0 {
		t.Fatal("store ls: no layer after image load")
	}
	key, _ := ls[0].(map[string]any)["key"].(string)
	checkJSON(t, "store inspect", runJSON(t, "store", "inspect", "--root", root, key), "store inspect")

	if os.Geteuid() == 0 {
		t.Setenv("HOSTCOMPUTE_COMPUTE_STATE_DIR", t.TempDir())
		checkJSON(t, "container ls", runJSON(t, "container", "ls"), "container ls")
	}
}

// TestJSONSchemaHNS: network and endpoint documents keep the HNS field names
// of the seed API (README's JSON output section), PascalCase with Id; the
// test checks ls prints an array of them naming what create made.
func TestJSONSchemaHNS(t *testing.T) {
	cnitest.Setup(t)
	t.Setenv("HOSTCOMPUTE_HNS_STATE_DIR", t.TempDir())
	t.Setenv("HOSTCOMPUTE_NETNS_DIR", t.TempDir())
	p := cnitest.Subnet(t)
	name := "schema-" + p.Addr().String()
	n, _ := runJSON(t, "network", "create", "--subnet", p.String(), name).(map[string]any)
	t.Cleanup(func() { wantCode(t, hcs(t, nil, "network", "rm", name), exitOK) })
	id, _ := n["Id"].(string)
	if id == "" {
		t.Fatalf("network create: no Id in %v", n)
	}
	t.Cleanup(func() { wantCode(t, hcs(t, nil, "endpoint", "rm", name+"-ep"), exitOK) })
	e, _ := runJSON(t, "endpoint", "create", "--network", name, name+"-ep").(map[string]any)
	eid, _ := e["Id"].(string)
	// endpoint check answers as every check does.
	checkJSON(t, "endpoint check", runJSON(t, "endpoint", "check", name+"-ep"), "endpoint check")
	for _, verb := range []string{"network", "endpoint"} {
		list, ok := runJSON(t, verb, "ls").([]any)
		if !ok {
			t.Fatalf("%s ls: not an array", verb)
		}
		found := false
		for _, x := range list {
			m, _ := x.(map[string]any)
			for k := range m {
				if k == "" || k[0] < 'A' || k[0] > 'Z' {
					t.Errorf("%s ls: field %q is not an HNS name", verb, k)
				}
			}
			found = found || m["Id"] == id || m["Id"] == eid
		}
		if !found {
			t.Errorf("%s ls lacks what create made: %v", verb, list)
		}
	}
}
