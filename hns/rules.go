package hns

import (
	"fmt"
	"strings"
)

// namesInterface reports whether an iptables rule's arguments match ifc as input
// or output interface.
func namesInterface(args []string, ifc string) bool {
	for i := 0; i+1 < len(args); i++ {
		if (args[i] == "-i" || args[i] == "-o") && args[i+1] == ifc {
			return true
		}
	}
	return false
}

// splitRule splits a rule as iptables -S prints it into arguments: words, with
// double-quoted strings (backslash escapes inside) as one argument.
func splitRule(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (c == ' ' || c == '\t'):
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
