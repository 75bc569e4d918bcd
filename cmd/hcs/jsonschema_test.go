package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Field names and value rules of README's "JSON output" section (jsonout.go).
var (
	// pathFields hold absolute paths of this machine.
	pathFields = map[string]bool{"layer": true, "file": true, "cim": true, "root": true, "target": true,
		"device": true, "folder": true, "source": true, "upper": true, "parent": true, "mountpoint": true,
		"rootfs": true, "scratch": true, "disk": true, "mountPath": true, "dir": true, "bundle": true}
	// byteFields are integers of bytes.
	byteFields = map[string]bool{"size": true, "virtualSize": true, "bytes": true, "readBytes": true,
		"imageBytes": true, "bytesWritten": true, "fileSize": true, "allocated": true, "oldSize": true,
		"ext4Size": true, "blockSize": true}
	// banned are names the vocabulary replaced: the same facts have one name.
	banned = map[string]string{"created": "creationTime", "modified": "lastWriteTime", "accessed": "lastAccessTime",
		"changed": "changeTime", "elapsedSeconds": "seconds", "fileAttributes": "attributes",
		"id": "fileID", "uniqueId": "uniqueID", "parentUniqueId": "parentUniqueID"}
	// verbatim fields hold documents of another vocabulary, not checked:
	// label and annotation maps (their keys are the user's), and the OCI
	// image-spec's config and platform, which image verbs print as stored.
	verbatim   = map[string]bool{"labels": true, "annotations": true, "config": true, "platform": true}
	lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
)

// checkJSON checks one document against the vocabulary's rules; where names
// the place in the document for messages.
func checkJSON(t *testing.T, verb string, v any, where string) {
	t.Helper()
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			checkJSON(t, verb, e, fmt.Sprintf("%s[%d]", where, i))
		}
	case map[string]any:
		if ok, has := x["ok"]; has {
			p, hasP := x["problems"].([]any)
			if b, isBool := ok.(bool); !isBool || !hasP || b != (len(p) == 0) {
				t.Errorf("%s: %s: ok %v and problems %v disagree", verb, where, ok, x["problems"])
			}
		}
		if _, has := x["problems"]; has {
			if _, ok := x["ok"]; !ok {
				t.Errorf("%s: %s: problems without ok", verb, where)
			}
		}
		if _, has := x["attributes"]; has {
			if _, ok := x["attributes"].(float64); !ok {
				t.Errorf("%s: %s.attributes is %T, want a number", verb, where, x["attributes"])
			}
			if names, ok := x["attributeNames"].([]any); !ok {
				t.Errorf("%s: %s: attributes without attributeNames", verb, where)
			} else {
				for _, n := range names {
					if s, ok := n.(string); !ok || s != strings.ToUpper(s) {
						t.Errorf("%s: %s: attribute name %v", verb, where, n)
					}
				}
			}
		}
		if _, has := x["lastWriteTime"]; has {
			for _, k := range []string{"creationTime", "lastAccessTime", "changeTime"} {
				if _, ok := x[k]; !ok {
					t.Errorf("%s: %s: lastWriteTime without %s", verb, where, k)
				}
			}
		}
		for k, val := range x {
			at := where + "." + k
			if verbatim[k] {
				continue
			}
			if !lowerCamel.MatchString(k) || strings.Contains(k, "Id") && !strings.Contains(k, "Ide") {
				t.Errorf("%s: %s: field name not lowerCamelCase with upper-case initialisms", verb, at)
			}
			if want, ok := banned[k]; ok {
				t.Errorf("%s: %s: say %q", verb, at, want)
			}
			_, isEntry := x["type"]
			switch {
			case pathFields[k] && !(isEntry && k == "target"): // an entry's target is a link's
				if s, ok := val.(string); !ok || s != "" && s != "-" && !filepath.IsAbs(s) {
					t.Errorf("%s: %s = %v, want an absolute path", verb, at, val)
				}
			case k == "path":
				if s, ok := val.(string); !ok || strings.HasPrefix(s, "/") || strings.Contains(s, `\`) {
					t.Errorf("%s: %s = %v, want a relative '/'-separated path", verb, at, val)
				}
			case byteFields[k]:
				if f, ok := val.(float64); !ok || f < 0 || f != float64(int64(f)) {
					t.Errorf("%s: %s = %v, want bytes as an integer", verb, at, val)
				}
			case k == "seconds":
				if f, ok := val.(float64); !ok || f < 0 {
					t.Errorf("%s: %s = %v, want a number of seconds", verb, at, val)
				}
			case strings.HasSuffix(k, "Time"):
				s, _ := val.(string)
				if tm, err := time.Parse(time.RFC3339Nano, s); err != nil || tm.Location() != time.UTC {
					t.Errorf("%s: %s = %v, want an RFC 3339 time in UTC", verb, at, val)
				}
			}
			checkJSON(t, verb, val, at)
		}
	}
}

// TestJSONSchema runs every verb with -o json and checks its document.
func TestJSONSchema(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // relative arguments: the documents must still say absolute paths
	tarb := sampleTar(t)
	writeFile(t, dir, "l.tar", tarb)
	writeFile(t, dir, "linux.tar", ociTar(t, ociEnt{name: "d/"}, ociEnt{name: "d/f", body: "hello"}))
	raw := make([]byte, 4<<20)
	copy(raw[510:], []byte{0x55, 0xaa})
	raw[446+4] = 0x83
	writeFile(t, dir, "disk.img", raw)
	os.Mkdir("upper", 0o755)
	os.WriteFile("upper/f", []byte("x"), 0o644)

	verbs := [][]string{
		{"layer", "import", "-f", "l.tar", "layer"},
		{"layer", "inspect", "layer"},
		{"layer", "inspect", "l.tar"},
		{"layer", "check", "layer"},
		{"layer", "path", "layer"},
		{"layer", "export", "-f", "out.tar", "layer"},
		{"cim", "create", "-f", "l.tar", "cimlayer"},
		{"cim", "create", "--from-folder", "layer", "cimlayer2"},
		{"cim", "ls", "-R", "cimlayer"},
		{"cim", "stat", "cimlayer", "Files"},
		{"cim", "verify", "cimlayer"},
		{"cim", "export", "-f", "cim.tar", "cimlayer"},
		{"cim", "export", "--to-folder", "back", "cimlayer"},
		{"vhd", "create", "--size", "8M", "a.vhdx"},
		{"vhd", "create", "--type", "differencing", "--parent", "a.vhdx", "b.vhdx"},
		{"vhd", "info", "b.vhdx"},
		{"vhd", "check", "a.vhdx"},
		{"vhd", "convert", "--format", "raw", "disk.img", "c.vhd"},
		{"vhd", "resize", "c.vhd", "16M"},
		{"tar2ext4", "-i", "linux.tar", "-o", "l.vhd", "-vhd"},
		{"ocilayer", "apply", "-f", "linux.tar", "root"},
		{"ocilayer", "diff", "-f", "upper.tar", "upper"},
	}
	if os.Geteuid() == 0 {
		t.Setenv("HOSTCOMPUTE_STATE_DIR", t.TempDir())
		// undo detaches each attachment with vhd detach -o json, and checks that.
		verbs = append(verbs, []string{"vhd", "attach", "--read-only", "--format", "raw", "disk.img"})
	} else {
		t.Log("not root: vhd attach and detach are not run")
	}
	for _, args := range verbs {
		verb := strings.Join(args[:2], " ")
		if args[0] == "tar2ext4" {
			verb = "tar2ext4"
		}
		for _, form := range [][]string{{"-o", "json"}, {"--output=json"}} {
			full := append(append([]string{}, form...), args...)
			r := hcs(t, nil, full...)
			wantCode(t, r, exitOK)
			var v any
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%s: not JSON: %v: %q", verb, err, r.stdout)
			}
			if dec.More() {
				t.Errorf("%s: more than one JSON document: %q", verb, r.stdout)
			}
			checkJSON(t, verb, v, verb)
			// Undo what made a result, so the second form can make it again.
			undo(t, args)
		}
	}
}

// undo changes a verb of TestJSONSchema so that it can run again.
func undo(t *testing.T, args []string) {
	t.Helper()
	last := args[len(args)-1]
	switch strings.Join(args[:2], " ") {
	case "ocilayer apply":
		os.RemoveAll(last)
	case "cim export":
		if args[2] == "--to-folder" {
			os.RemoveAll(args[3])
		}
	case "layer import", "cim create", "vhd create", "vhd convert":
		args[len(args)-1] = "again-" + last
	case "vhd resize":
		args[len(args)-1] = "24M"
	case "vhd attach":
		r := hcs(t, nil, "-o", "json", "vhd", "detach", last)
		wantCode(t, r, exitOK)
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("vhd detach: not JSON: %q", r.stdout)
		}
		checkJSON(t, "vhd detach", v, "vhd detach")
	}
}

// TestJSONTimes: a zero FILETIME is 1601-01-01, not left out; times keep
// their 100 ns.
func TestJSONTimes(t *testing.T) {
	if got := fileTimeJSON(0); got != "1601-01-01T00:00:00Z" {
		t.Errorf("FILETIME 0 = %s", got)
	}
	if got := fileTimeJSON(133_000_000_000_000_001); got != "2022-06-18T04:26:40.0000001Z" {
		t.Errorf("FILETIME with 100 ns = %s", got)
	}
}
