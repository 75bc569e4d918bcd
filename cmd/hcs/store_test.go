package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/store"
)

func TestStoreCommands(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := store.Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "base-a", "", store.WithLabels(map[string]string{"team": "x"})); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "base-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "work", "base"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	r := hcs(t, nil, "store", "ls", "--root", root, "-o", "json")
	wantCode(t, r, exitOK)
	var infos []store.Info
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 || infos[0].Key != "base" || infos[0].Kind != store.KindCommitted || infos[2].Key != "work" || infos[2].Parent != "base" {
		t.Errorf("ls -o json = %s", r.stdout)
	}
	r = hcs(t, nil, "store", "ls", "--root", root, "--filter", "kind==view")
	wantCode(t, r, exitOK)
	if lines := strings.Split(r.stdout, "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "view") {
		t.Errorf("ls --filter kind==view:\n%s", r.stdout)
	}
	wantCode(t, hcs(t, nil, "store", "ls", "--root", root, "--filter", `name=="x`), exitUsage)

	r = hcs(t, nil, "store", "inspect", "--root", root, "-o", "json", "work")
	wantCode(t, r, exitOK)
	var l storeLayer
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatal(err)
	}
	if l.Kind != store.KindActive || len(l.Mounts) != 1 || l.Mounts[0].Type != "overlay" || l.Usage == nil {
		t.Errorf("inspect work = %s", r.stdout)
	}
	wantCode(t, hcs(t, nil, "store", "inspect", "--root", root, "nope"), exitNotFound)

	r = hcs(t, nil, "store", "check", "--root", root, "-o", "json")
	wantCode(t, r, exitOK)
	// Damage: the committed layer's directory goes.
	ents, _ := os.ReadDir(filepath.Join(root, "layers"))
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(root, "layers", e.Name(), "work")); err != nil {
			os.RemoveAll(filepath.Join(root, "layers", e.Name())) // base: no work directory
		}
	}
	r = hcs(t, nil, "store", "check", "--root", root, "-o", "json")
	if r.code != exitInvalidInput {
		t.Fatalf("check of a damaged store: exit %d, want %d\n%s%s", r.code, exitInvalidInput, r.stdout, r.stderr)
	}
	var res problemsResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.OK || len(res.Problems) == 0 || res.Problems[0].Kind != store.ProblemMissingDir || res.Problems[0].Key != "base" {
		t.Errorf("check = %s", r.stdout)
	}
	wantCode(t, hcs(t, nil, "store", "repair", "--root", root), exitOK)
	wantCode(t, hcs(t, nil, "store", "check", "--root", root), exitOK)
	r = hcs(t, nil, "store", "ls", "--root", root, "-o", "json")
	wantCode(t, r, exitOK)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("after repair: %s", r.stdout)
	}
	wantCode(t, hcs(t, nil, "store", "gc", "--root", root, "-o", "json"), exitOK)
}
