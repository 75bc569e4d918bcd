package store_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/store"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to mount overlays and make whiteouts")
	}
}

func openStore(t *testing.T, root string, opts ...store.OpenOption) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// assertClean fails when anything is mounted under root or Check finds a
// problem.
func assertClean(t *testing.T, root string) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := filepath.EvalSymlinks(root)
	for _, m := range mountinfo.Under(ms, r) {
		t.Errorf("left mounted: %s (%s)", m.Mountpoint, m.FSType)
	}
	if devs, err := loop.FindUnder(r); err != nil || len(devs) > 0 {
		t.Errorf("loop devices left: %v %v", devs, err)
	}
	c := openStore(t, root, store.WithoutReconcile())
	ps, err := c.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		t.Errorf("check: %+v", p)
	}
}

type tarEntry struct {
	name, body string
	typ        byte
}

func makeTar(t *testing.T, es ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if e.typ == tar.TypeDir {
			h.Mode, h.Size = 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestLinuxImportViewExport(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	base := makeTar(t, tarEntry{name: "a/", typ: tar.TypeDir}, tarEntry{name: "a/x", body: "hello", typ: tar.TypeReg}, tarEntry{name: "b", body: "bee", typ: tar.TypeReg})
	child := makeTar(t, tarEntry{name: "a/", typ: tar.TypeDir}, tarEntry{name: "a/y", body: "why", typ: tar.TypeReg}, tarEntry{name: ".wh.b", typ: tar.TypeReg})
	bi, err := s.Import(ctx, "base", "", bytes.NewReader(base), store.WithLabels(map[string]string{"l": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if bi.Kind != store.KindCommitted || bi.Format != store.FormatLinuxDir || !strings.HasPrefix(bi.DiffID, "sha256:") || bi.ChainID != bi.DiffID || bi.Size == 0 || bi.Labels["l"] != "1" {
		t.Errorf("base info = %+v", bi)
	}
	ci, err := s.Import(ctx, "child", "base", bytes.NewReader(child))
	if err != nil {
		t.Fatal(err)
	}
	if ci.Parent != "base" || ci.ChainID == "" || ci.ChainID == ci.DiffID {
		t.Errorf("child info = %+v", ci)
	}
	if _, err := s.Import(ctx, "child", "base", bytes.NewReader(child)); !errors.Is(err, store.ErrAlreadyExists) || !errors.Is(err, fs.ErrExist) {
		t.Errorf("second import: %v, want ErrAlreadyExists", err)
	}
	if _, err := s.Import(ctx, "x", "nope", bytes.NewReader(child)); !errors.Is(err, store.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("import over a missing parent: %v, want ErrNotFound", err)
	}
	bad := append(makeTar(t, tarEntry{name: "../evil", body: "x", typ: tar.TypeReg}), 0)
	if _, err := s.Import(ctx, "bad", "", bytes.NewReader(bad)); err == nil {
		t.Error("import of a tar with ../evil succeeded")
	}
	if _, err := s.Stat(ctx, "bad"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat of a failed import: %v, want ErrNotFound", err)
	}

	ms, err := s.View(ctx, "v", "child")
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	undo, err := store.MountAll(ctx, ms, mnt)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(mnt, p)
			got[rel] = string(b)
		}
		return nil
	})
	if err := undo.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a/x"] != "hello" || got["a/y"] != "why" {
		t.Errorf("view shows %v, want a/x and a/y only", got)
	}
	var out bytes.Buffer
	if err := s.Export(ctx, &out, "child"); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, out.Bytes())
	sort.Strings(names)
	if strings.Join(names, " ") != ".wh.b a/ a/y" {
		t.Errorf("export of child has %q", names)
	}
	if err := s.Export(ctx, io.Discard, "v"); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("export of a view: %v, want ErrFailedPrecondition", err)
	}
	if err := s.Remove(ctx, "base"); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("remove of a parent: %v, want ErrFailedPrecondition", err)
	}
	for _, k := range []string{"v", "child", "base"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	assertClean(t, root)
	if ents, _ := os.ReadDir(filepath.Join(root, "layers")); len(ents) != 0 {
		t.Errorf("layers/ holds %d entries after removing everything", len(ents))
	}
}

func TestWindowsImportPrepareCommitExport(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	var in bytes.Buffer
	if err := sampletar.Write(&in, sampletar.Options{Seed: 7, Files: 40, Bytes: 256 << 10, Hives: true}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Import(ctx, "wbase", "", bytes.NewReader(in.Bytes()), store.WithFormat(store.FormatWindowsFolder))
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != store.FormatWindowsFolder {
		t.Errorf("format %s", info.Format)
	}
	// The store's export equals ociwclayer's of the same tar imported into a
	// plain folder.
	folder := filepath.Join(t.TempDir(), "layer")
	if _, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(in.Bytes()), folder, nil); err != nil {
		t.Fatal(err)
	}
	var want, got bytes.Buffer
	if err := ociwclayer.ExportLayerToTar(ctx, &want, folder, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Export(ctx, &got, "wbase"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want.Bytes(), got.Bytes()) {
		t.Errorf("store export differs from ociwclayer's (%d vs %d bytes)", got.Len(), want.Len())
	}

	ms, err := s.Prepare(ctx, "scratch", "wbase")
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	undo, err := store.MountAll(ctx, ms, mnt)
	if err != nil {
		t.Fatal(err)
	}
	werr := os.WriteFile(filepath.Join(mnt, "new.txt"), []byte("new file"), 0o644)
	if werr == nil {
		werr = os.Mkdir(filepath.Join(mnt, "newdir"), 0o755)
	}
	if err := undo.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	// The first read of new files moves their access times (relatime); the
	// diff exported after it is the one Commit sees.
	if err := s.Export(ctx, io.Discard, "scratch"); err != nil {
		t.Fatal(err)
	}
	var diff bytes.Buffer
	if err := s.Export(ctx, &diff, "scratch"); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, diff.Bytes())
	if !strings.Contains(strings.Join(names, " "), "Files/new.txt") {
		t.Errorf("diff of the scratch layer lacks Files/new.txt: %q", names)
	}
	if err := s.Commit(ctx, "wchild", "scratch"); err != nil {
		t.Fatal(err)
	}
	ci, err := s.Stat(ctx, "wchild")
	if err != nil {
		t.Fatal(err)
	}
	if ci.Kind != store.KindCommitted || ci.Parent != "wbase" || !strings.HasPrefix(ci.DiffID, "sha256:") {
		t.Errorf("committed child: %+v", ci)
	}
	var again bytes.Buffer
	if err := s.Export(ctx, &again, "wchild"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), diff.Bytes()) {
		a, b := tarNames(t, again.Bytes()), tarNames(t, diff.Bytes())
		t.Errorf("export of the committed layer differs from the diff of the active one:\n%q\n%q", a, b)
		tr1, tr2 := tar.NewReader(bytes.NewReader(again.Bytes())), tar.NewReader(bytes.NewReader(diff.Bytes()))
		for {
			h1, err1 := tr1.Next()
			h2, err2 := tr2.Next()
			if err1 != nil || err2 != nil {
				break
			}
			if h1.Name != h2.Name || h1.Size != h2.Size || h1.Mode != h2.Mode || !h1.ModTime.Equal(h2.ModTime) || len(h1.PAXRecords) != len(h2.PAXRecords) {
				t.Errorf("%+v\n%+v", h1, h2)
			}
			for k, v := range h1.PAXRecords {
				if h2.PAXRecords[k] != v {
					t.Errorf("%s: %s: %q vs %q", h1.Name, k, v, h2.PAXRecords[k])
				}
			}
		}
	}
	for _, k := range []string{"wchild", "wbase"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	assertClean(t, root)
}

func TestErrorsAndWalk(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	if _, err := s.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "a", ""); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("prepare twice: %v", err)
	}
	if _, err := s.Prepare(ctx, "b", "a"); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("prepare over an active layer: %v", err)
	}
	if _, err := s.Stat(ctx, "zz"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat: %v", err)
	}
	var se *store.Error
	if _, err := s.Stat(ctx, "zz"); !errors.As(err, &se) || se.Op != "stat" || se.Key != "zz" {
		t.Errorf("stat error %v is not a *store.Error naming the op and key", err)
	}
	if err := s.Commit(ctx, "c", "a", store.WithLabels(map[string]string{"x": "y"})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "v", "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "c2", "v"); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("commit of a view: %v", err)
	}
	if _, err := s.Mounts(ctx, "c"); !errors.Is(err, store.ErrFailedPrecondition) {
		t.Errorf("mounts of a committed layer: %v", err)
	}
	if _, err := s.Update(ctx, store.Info{Key: "c"}, "parent"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("update of parent: %v", err)
	}
	if err := s.Walk(ctx, func(context.Context, store.Info) error { return nil }, "kind=="); err != nil {
		t.Errorf("walk with an empty value: %v", err)
	}
	if err := s.Walk(ctx, func(context.Context, store.Info) error { return nil }, `name=="x`); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("walk with an unterminated quote: %v", err)
	}
	for filter, want := range map[string]string{
		"kind==view":               "v",
		"labels.x==y":              "c",
		`parent!=""`:               "v",
		"name~=^[cv]$,kind!=view":  "c",
		"format==linux-dir,labels": "c",
	} {
		var got []string
		if err := s.Walk(ctx, func(_ context.Context, i store.Info) error { got = append(got, i.Key); return nil }, filter); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if strings.Join(got, " ") != want {
			t.Errorf("walk %q = %q, want %q", filter, got, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "c"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("stat after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// TestCheckRepair injects each kind of damage and checks that Check finds it
// and Repair mends it.
func TestCheckRepair(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	mk := func(key, parent string) {
		if _, err := s.Prepare(ctx, key+"-a", parent); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, key, key+"-a"); err != nil {
			t.Fatal(err)
		}
	}
	mk("keep", "")
	mk("nodir", "")
	mk("gone", "")
	mk("orphaned", "gone")
	mk("trunc", "")
	if _, err := s.Prepare(ctx, "keep-active", "keep"); err != nil {
		t.Fatal(err)
	}
	id := func(key string) string {
		var id string
		db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket([]byte("v1")).Bucket([]byte("layers")).Get([]byte(key))
			id = strings.TrimSuffix(strings.SplitN(strings.SplitN(string(v), `"id":`, 2)[1], ",", 2)[0], "}")
			return nil
		})
		return id
	}
	if err := os.RemoveAll(filepath.Join(root, "layers", id("nodir"))); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		v1 := tx.Bucket([]byte("v1"))
		lb := v1.Bucket([]byte("layers"))
		if err := lb.Delete([]byte("gone")); err != nil {
			return err
		}
		v := lb.Get([]byte("trunc"))
		if err := lb.Put([]byte("trunc"), append([]byte(nil), v[:len(v)/2]...)); err != nil {
			return err
		}
		return v1.Bucket([]byte("mounts")).Put([]byte(filepath.Join(root, "staging", "x", "merged")), []byte(`{"target":"`+filepath.Join(root, "staging", "x", "merged")+`","pid":2147483000,"start":1}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := openStore(t, root, store.WithoutReconcile())
	ps, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, p := range ps {
		found[p.Kind+" "+p.Key] = true
	}
	for _, want := range []string{
		store.ProblemMissingDir + " nodir",
		store.ProblemDangling + " orphaned",
		store.ProblemCorrupt + " trunc",
		store.ProblemStaleMount + " ",
	} {
		if !found[want] {
			t.Errorf("check did not find %q; found %v", want, ps)
		}
	}
	if _, err := c.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	ps, err = c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 0 {
		t.Errorf("check after repair: %+v", ps)
	}
	var keys []string
	c.Walk(ctx, func(_ context.Context, i store.Info) error { keys = append(keys, i.Key); return nil })
	if strings.Join(keys, " ") != "keep keep-active" {
		t.Errorf("after repair the store holds %q, want keep and keep-active", keys)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "layers"))
	if len(ents) != 2 {
		t.Errorf("layers/ holds %d directories after repair, want 2", len(ents))
	}
	_ = unix.Getpid
}

func TestOpenRefusesOverlaySyntax(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a:b")
	if _, err := store.Open(context.Background(), root); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("open of %s: %v, want ErrInvalidArgument", root, err)
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("the refused open made %s", root)
	}
}

// TestWindowsUnionTombstones: a view over a Windows child layer that removes a
// file of its parent does not show it.
func TestWindowsUnionTombstones(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	var base bytes.Buffer
	if err := sampletar.Write(&base, sampletar.Options{Seed: 11, Files: 20, Bytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	// A file of the base that the child does not write again.
	var plain bytes.Buffer
	if err := sampletar.Write(&plain, sampletar.Options{Seed: 12, Files: 5, Bytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	inChild := map[string]bool{}
	for _, n := range tarNames(t, plain.Bytes()) {
		inChild[n] = true
	}
	gone := ""
	tr := tar.NewReader(bytes.NewReader(base.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal("no regular file under Files/ in the base that the child lacks")
		}
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, "Files/") && !inChild[h.Name] {
			gone = h.Name
			break
		}
	}
	var child bytes.Buffer
	if err := sampletar.Write(&child, sampletar.Options{Seed: 12, Files: 5, Bytes: 8 << 10, Whiteouts: []string{gone}}); err != nil {
		t.Fatal(err)
	}
	w := store.WithFormat(store.FormatWindowsFolder)
	if _, err := s.Import(ctx, "b", "", &base, w); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "c", "b", &child, w); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "l", "b", bytes.NewReader(makeTar(t, tarEntry{name: "x", typ: tar.TypeReg}))); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("a Linux layer over a Windows parent: %v, want ErrInvalidArgument", err)
	}
	ms, err := s.View(ctx, "v", "c")
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	undo, err := store.MountAll(ctx, ms, mnt)
	if err != nil {
		t.Fatal(err)
	}
	_, gerr := os.Lstat(filepath.Join(mnt, strings.TrimPrefix(gone, "Files/")))
	ents, _ := os.ReadDir(mnt)
	if err := undo.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(gerr, fs.ErrNotExist) {
		t.Errorf("the union shows %s, which the child removes (%v)", gone, gerr)
	}
	if len(ents) == 0 {
		t.Error("the union is empty")
	}
	for _, k := range []string{"v", "c", "b"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	assertClean(t, root)
}

func TestExt4VHDImportExport(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	s := openStore(t, root)
	e := store.WithFormat(store.FormatExt4VHD)
	base := makeTar(t, tarEntry{name: "a/", typ: tar.TypeDir}, tarEntry{name: "a/x", body: "hello", typ: tar.TypeReg}, tarEntry{name: "b", body: "bee", typ: tar.TypeReg})
	child := makeTar(t, tarEntry{name: "a/", typ: tar.TypeDir}, tarEntry{name: "a/y", body: "why", typ: tar.TypeReg}, tarEntry{name: ".wh.b", typ: tar.TypeReg})
	if _, err := s.Import(ctx, "base", "", bytes.NewReader(base), e); err != nil {
		t.Fatal(err)
	}
	ci, err := s.Import(ctx, "child", "base", bytes.NewReader(child), e)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Format != store.FormatExt4VHD || ci.ChainID == "" || ci.Size == 0 {
		t.Errorf("child: %+v", ci)
	}
	if _, err := s.View(ctx, "v", "child"); !errors.Is(err, store.ErrUnsupported) {
		t.Errorf("view over an ext4-vhd layer: %v, want ErrUnsupported", err)
	}
	var out bytes.Buffer
	if err := s.Export(ctx, &out, "child"); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, out.Bytes())
	sort.Strings(names)
	if j := strings.Join(names, " "); !strings.Contains(j, ".wh.b") || !strings.Contains(j, "a/y") || strings.Contains(j, "a/x") || strings.Contains(j, "lost+found") {
		t.Errorf("export of the ext4-vhd child has %q", names)
	}
	t.Logf("export of the ext4-vhd child: %q", names)
	assertClean(t, root)
	for _, k := range []string{"child", "base"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPrepareDurability checks the guarantee of Prepare and View (package
// documentation, Durability): their records outlive the process at once, and
// the machine once a synced call has run; the first Open of a later boot drops
// the rest, directories included.
func TestPrepareDurability(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := store.Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "durable", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // folds "durable" into meta.db
		t.Fatal(err)
	}
	s = openStore(t, root)
	other := openStore(t, root) // opened before: Open is a synced call
	if _, err := s.Prepare(ctx, "pending", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "pending-view", ""); err != nil {
		t.Fatal(err)
	}
	// Another process (here: another Store) sees it without any sync.
	if _, err := other.Stat(ctx, "pending"); err != nil {
		t.Fatalf("a pending Prepare is not visible to the next Open: %v", err)
	}
	vols, _ := filepath.Glob(filepath.Join(root, "volatile-*.db"))
	if len(vols) != 1 {
		t.Fatalf("volatile files: %v", vols)
	}
	layers, _ := os.ReadDir(filepath.Join(root, "layers"))
	// A reboot: the volatile file now belongs to an earlier boot.
	if err := os.Rename(vols[0], filepath.Join(root, "volatile-00000000-0000-0000-0000-000000000000.db")); err != nil {
		t.Fatal(err)
	}
	c := openStore(t, root, store.WithoutReconcile())
	ps, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, p := range ps {
		kinds[p.Kind]++
	}
	if kinds[store.ProblemOldVolatile] != 1 || kinds[store.ProblemOrphanDir] != 2 || len(ps) != 3 {
		t.Errorf("check after a reboot: %+v", ps)
	}
	s2 := openStore(t, root)
	if _, err := s2.Stat(ctx, "durable"); err != nil {
		t.Errorf("a Prepare made durable by Close is lost: %v", err)
	}
	for _, k := range []string{"pending", "pending-view"} {
		if _, err := s2.Stat(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat(%s) after a reboot = %v, want ErrNotFound", k, err)
		}
	}
	after, _ := os.ReadDir(filepath.Join(root, "layers"))
	if len(layers) != 3 || len(after) != 1 {
		t.Errorf("layer directories: %d before the reboot, %d after; want 3, 1", len(layers), len(after))
	}
	assertClean(t, root)
}
