package runtime

import (
	"fmt"
	"strings"
)

// Bounds of what $(VAR) expansion may build, checked before it allocates:
// a manifest of a few KiB can reference a large value thousands of times.
// execve refuses a single argument or environment string over
// MAX_ARG_STRLEN (32 pages: 128 KiB), and all of them together over a
// quarter of the stack limit (2 MiB under the usual 8 MiB), so nothing
// past these bounds could run anyway.
const (
	maxArgLen   = 128 << 10
	maxArgTotal = 2 << 20
)

// expansion expands one container's strings within the kernel's bounds. The
// zero value is ready; after the first refusal, err says which field and
// later calls return "".
type expansion struct {
	lookup func(string) (string, bool)
	total  int
	err    error
}

// expand expands s (the field named field) and counts it against the
// container's total.
func (x *expansion) expand(field, s string) string {
	if x.err != nil {
		return ""
	}
	out, ok := expand(s, x.lookup, min(maxArgLen, maxArgTotal-x.total))
	switch {
	case !ok && x.total+maxArgLen > maxArgTotal:
		x.err = fmt.Errorf("%s: with $(VAR) expanded, the command and environment exceed %d bytes, more than the kernel passes to a program", field, maxArgTotal)
	case !ok:
		x.err = fmt.Errorf("%s: with $(VAR) expanded it exceeds %d bytes, the kernel's limit for one argument or variable", field, maxArgLen)
	}
	x.total += len(out)
	return out
}

// expand replaces the Kubernetes variable references $(NAME) in s with
// their values from lookup, as kubelet does for env values, command and
// args:
//
//   - $$ is an escaped $: "$$(A)" yields "$(A)";
//   - a reference to an undefined name is left as written: "$(NOPE)";
//   - a $ not followed by "(" or "$", and an unterminated "$(" are kept.
//
// It stops, and reports false, as soon as the result would be longer than
// limit bytes.
func expand(s string, lookup func(string) (string, bool), limit int) (string, bool) {
	if !strings.Contains(s, "$") {
		return s, len(s) <= limit
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if b.Len() > limit {
			return "", false
		}
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Unterminated: keep "$(" and go on with what follows.
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				if b.Len()+len(v) > limit {
					return "", false
				}
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	if b.Len() > limit {
		return "", false
	}
	return b.String(), true
}
