package store

import (
	"regexp"
	"strconv"
	"strings"
)

// filters is a parsed list of Walk filters: a layer matches when it matches any
// of them, and a filter when all its conditions hold.
type filters [][]condition

type condition struct {
	path  []string // field path: "kind", or "labels", "<name>"
	op    string   // "", "==", "!=", "~="
	value string
	re    *regexp.Regexp
}

// parseFilters parses Walk's filters; a malformed one fails with
// ErrInvalidArgument naming the filter and the byte offset.
func parseFilters(fs []string) (filters, error) {
	var out filters
	for _, f := range fs {
		conds, err := parseFilter(f)
		if err != nil {
			return nil, err
		}
		out = append(out, conds)
	}
	return out, nil
}

func parseFilter(f string) ([]condition, error) {
	p := &filterParser{s: f}
	var conds []condition
	for {
		c, err := p.condition()
		if err != nil {
			return nil, err
		}
		conds = append(conds, c)
		p.space()
		if p.eof() {
			return conds, nil
		}
		if p.s[p.i] != ',' {
			return nil, p.fail("want ',' between conditions")
		}
		p.i++
	}
}

type filterParser struct {
	s string
	i int
}

func (p *filterParser) eof() bool { return p.i >= len(p.s) }

func (p *filterParser) space() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *filterParser) fail(msg string) error {
	return classf(ErrInvalidArgument, "filter %q at offset %d: %s", p.s, p.i, msg)
}

func (p *filterParser) condition() (condition, error) {
	var c condition
	for {
		p.space()
		part, err := p.word(".,=!~ \t")
		if err != nil {
			return c, err
		}
		if part == "" {
			return c, p.fail("want a field name")
		}
		c.path = append(c.path, part)
		if p.eof() || p.s[p.i] != '.' {
			break
		}
		p.i++
	}
	p.space()
	for _, op := range []string{"==", "!=", "~="} {
		if strings.HasPrefix(p.s[p.i:], op) {
			c.op = op
			p.i += 2
			break
		}
	}
	if c.op == "" {
		if !p.eof() && p.s[p.i] != ',' {
			return c, p.fail("want ==, != or ~=")
		}
		return c, nil
	}
	p.space()
	v, err := p.word(",")
	if err != nil {
		return c, err
	}
	c.value = strings.TrimRight(v, " \t")
	if c.op == "~=" {
		re, err := regexp.Compile(c.value)
		if err != nil {
			return c, p.fail("bad regular expression: " + err.Error())
		}
		c.re = re
	}
	return c, nil
}

// word reads a double-quoted string or the characters up to one of stop.
func (p *filterParser) word(stop string) (string, error) {
	if !p.eof() && p.s[p.i] == '"' {
		start := p.i
		for j := p.i + 1; j < len(p.s); j++ {
			switch p.s[j] {
			case '\\':
				j++
			case '"':
				v, err := strconv.Unquote(p.s[start : j+1])
				if err != nil {
					return "", p.fail("bad quoted string")
				}
				p.i = j + 1
				return v, nil
			}
		}
		return "", p.fail("unterminated quoted string")
	}
	start := p.i
	for !p.eof() && !strings.ContainsRune(stop, rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i], nil
}

func (fs filters) match(info *Info) bool {
	if len(fs) == 0 {
		return true
	}
	for _, conds := range fs {
		ok := true
		for _, c := range conds {
			if !c.match(info) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (c condition) match(info *Info) bool {
	v, present := field(info, c.path)
	switch c.op {
	case "":
		return present
	case "==":
		return present && v == c.value
	case "!=":
		return present && v != c.value
	case "~=":
		return present && c.re.MatchString(v)
	}
	return false
}

// field returns the value of a field path of info, and whether it is present.
func field(info *Info, path []string) (string, bool) {
	if len(path) == 0 {
		return "", false
	}
	if path[0] == "labels" {
		if len(path) == 1 {
			return "", len(info.Labels) > 0
		}
		v, ok := info.Labels[strings.Join(path[1:], ".")]
		return v, ok
	}
	if len(path) != 1 {
		return "", false
	}
	var v string
	switch path[0] {
	case "name", "key":
		v = info.Key
	case "parent":
		v = info.Parent
	case "kind":
		v = info.Kind.String()
	case "format":
		v = string(info.Format)
	case "diffID":
		v = info.DiffID
	case "chainID":
		v = info.ChainID
	default:
		return "", false
	}
	return v, v != ""
}
