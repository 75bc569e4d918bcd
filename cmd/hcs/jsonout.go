package main

// The JSON vocabulary of -o json, one Go type per fact that several commands
// report, so that the same fact has the same name, unit and type everywhere.
// README.md's "JSON output" section documents it; TestJSONSchema runs every
// verb and checks its document against these rules:
//
//   - paths of files and folders on this machine are absolute ("layer", "file",
//     "cim", "root", "target", "device", ...); paths inside a layer or image are
//     relative, '/'-separated ("path");
//   - sizes and counts of bytes are integers in bytes ("size", "virtualSize",
//     "bytes", ...); durations are "seconds", a number;
//   - times are RFC 3339 strings in UTC with up to 100 ns precision, always
//     present (a zero FILETIME is "1601-01-01T00:00:00Z");
//   - Windows attributes are "attributes" (the FILE_ATTRIBUTE_* number) with
//     "attributeNames" (their names, upper case, without the prefix);
//   - checks answer {"ok", "problems"}: ok is true exactly when problems is empty.

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Times are the four Windows times of an entry.
type Times struct {
	CreationTime   string `json:"creationTime"`
	LastAccessTime string `json:"lastAccessTime"`
	LastWriteTime  string `json:"lastWriteTime"`
	ChangeTime     string `json:"changeTime"`
}

// Attributes are an entry's FILE_ATTRIBUTE_* bits, as a number and as names.
type Attributes struct {
	Attributes     uint32   `json:"attributes"`
	AttributeNames []string `json:"attributeNames"`
}

// CheckResult is the answer of a command that checks something.
type CheckResult struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

// Disk describes a virtual disk file, and its block device when attached.
type Disk struct {
	File        string `json:"file"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtualSize"`
	Device      string `json:"device,omitempty"`
	ReadOnly    bool   `json:"readOnly"`
}

// Duration is the time a command took.
type Duration struct {
	Seconds float64 `json:"seconds"`
}

// jsonTime formats t as the vocabulary's time: RFC 3339, UTC, up to 100 ns.
func jsonTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// fileTimeJSON formats a FILETIME; zero is 1601-01-01T00:00:00Z.
func fileTimeJSON(ft winfile.Filetime) string { return jsonTime(ft.Time()) }

func newTimes(info winfile.BasicInfo) Times {
	return Times{
		CreationTime:   fileTimeJSON(info.CreationTime),
		LastAccessTime: fileTimeJSON(info.LastAccessTime),
		LastWriteTime:  fileTimeJSON(info.LastWriteTime),
		ChangeTime:     fileTimeJSON(info.ChangeTime),
	}
}

func newAttributes(attr uint32) Attributes {
	names := []string{}
	if attr != 0 {
		names = strings.Split(winfile.AttributeString(attr), "|")
	}
	return Attributes{Attributes: attr, AttributeNames: names}
}

func newCheckResult(problems []string) CheckResult {
	if problems == nil {
		problems = []string{}
	}
	return CheckResult{OK: len(problems) == 0, Problems: problems}
}

func newDuration(d time.Duration) Duration { return Duration{Seconds: d.Seconds()} }

// absPath is p made absolute (p itself when that fails).
func absPath(p string) string {
	if p == "" || p == stdio {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func absPaths(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = absPath(p)
	}
	return out
}

// diskJSON describes an attachment.
func diskJSON(at *host.Attachment) Disk {
	return Disk{File: at.Disk, Format: string(at.Format), VirtualSize: at.Size, Device: at.Device, ReadOnly: at.ReadOnly}
}

// Entry is one file, directory, link or removal of a layer or image, as
// layer inspect, cim ls and cim stat print it.
type Entry struct {
	// Path is the entry's layer-relative, '/'-separated name.
	Path string `json:"path"`
	// Type is file, dir, symlink, junction, link (a hard link to Target),
	// whiteout (a removal of a parent's entry) or reparse (another reparse
	// point, see ReparseTag).
	Type string `json:"type"`
	Size int64  `json:"size"`
	Attributes
	Times
	// FileID is the CIM file ID (hard links share one); absent for folders and tars.
	FileID             *uint32  `json:"fileID,omitempty"`
	NoDataStream       bool     `json:"noDataStream,omitempty"`
	SecurityDescriptor string   `json:"securityDescriptor,omitempty"` // SDDL
	ExtendedAttributes []EA     `json:"extendedAttributes,omitempty"`
	Streams            []Stream `json:"streams,omitempty"`
	Target             string   `json:"target,omitempty"`     // link, symlink and junction target
	ReparseTag         string   `json:"reparseTag,omitempty"` // "0x%08x"
}

// EA is an extended attribute; Value is base64 in JSON.
type EA struct {
	Name  string `json:"name"`
	Flags uint8  `json:"flags"`
	Value []byte `json:"value"`
}

// Stream is an alternate data stream.
type Stream struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}
