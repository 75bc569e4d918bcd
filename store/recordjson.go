package store

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// encodeRecord returns the JSON of r, the same bytes json.Marshal(r) gives (a
// test and a fuzz target hold the two together; decodeLink relies on the field
// order). It exists for speed in a fresh process: json.Marshal builds the
// encoder of a struct type by reflection on its first use, about 0.15 ms here,
// which every Prepare and View of a short-lived process (the CLI, a containerd
// call through a helper) paid.
func encodeRecord(r *record) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, r.ID, 10)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, r.Key)
	if r.Parent != "" {
		b = append(b, `,"parent":`...)
		b = appendJSONString(b, r.Parent)
	}
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, r.Kind.String())
	b = append(b, `,"format":`...)
	b = appendJSONString(b, string(r.Format))
	if len(r.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		keys := make([]string, 0, len(r.Labels))
		for k := range r.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Labels[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, r.Size, 10)
	b = append(b, `,"inodes":`...)
	b = strconv.AppendInt(b, r.Inodes, 10)
	if r.DiffID != "" {
		b = append(b, `,"diffID":`...)
		b = appendJSONString(b, r.DiffID)
	}
	if r.ChainID != "" {
		b = append(b, `,"chainID":`...)
		b = appendJSONString(b, r.ChainID)
	}
	var err error
	b = append(b, `,"created":`...)
	if b, err = appendJSONTime(b, r.Created); err != nil {
		return json.Marshal(r) // for its error, worded as everywhere else
	}
	b = append(b, `,"updated":`...)
	if b, err = appendJSONTime(b, r.Updated); err != nil {
		return json.Marshal(r)
	}
	if r.HasDir {
		b = append(b, `,"hasDir":true`...)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes a string: printable ASCII
// other than the quote, the backslash and the three HTML characters as it is,
// anything else through encoding/json itself (a string's encoder needs no
// reflection).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONTime appends t as encoding/json writes a time.Time: its
// MarshalJSON, an RFC 3339 string that needs no escaping.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	q, err := t.MarshalJSON()
	if err != nil {
		return b, err
	}
	return append(b, q...), nil
}
