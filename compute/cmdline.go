package compute

import (
	"fmt"
	"strings"
)

// SplitCommandLine splits a command line into arguments the way a POSIX shell
// splits words, without any expansion:
//   - blanks (space, tab, newline) separate arguments;
//   - 'single quotes' keep everything up to the next single quote literally;
//   - "double quotes" keep everything literally except that a backslash
//     escapes one of \ " $ ` and a newline (the backslash is dropped);
//   - outside quotes a backslash keeps the next character literally;
//   - quoted empty strings (” or "") are arguments.
//
// An unterminated quote or a trailing backslash is an error naming its offset.
func SplitCommandLine(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("%w: command line: trailing backslash at offset %d", ErrInvalidArgument, i)
			}
			i++
			cur.WriteByte(s[i])
			inArg = true
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("%w: command line: unterminated single quote at offset %d", ErrInvalidArgument, i)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inArg = true
		case ch == '"':
			start := i
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("%w: command line: unterminated double quote at offset %d", ErrInvalidArgument, start)
			}
			inArg = true
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}
