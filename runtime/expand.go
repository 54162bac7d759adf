package runtime

import "strings"

// expand replaces the Kubernetes variable references $(NAME) in s with
// their values from lookup, as kubelet does for env values, command and
// args:
//
//   - $$ is an escaped $: "$$(A)" yields "$(A)";
//   - a reference to an undefined name is left as written: "$(NOPE)";
//   - a $ not followed by "(" or "$", and an unterminated "$(" are kept.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
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
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
