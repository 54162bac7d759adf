package netsetup

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ruleWriter is what the table's builders need of an nftables batch. A
// *nftables.Conn writes the table; a tableShape records what it must hold.
type ruleWriter interface {
	AddChain(*nftables.Chain) *nftables.Chain
	AddRule(*nftables.Rule) *nftables.Rule
}

// tableShape is what a check compares of the table: each chain's rules in
// order, a rule known by its comment and its number of expressions. It
// tells a flushed table, a deleted chain or rule, and a rule added by hand
// from the table peapod wrote; a nil shape is a missing table.
type tableShape map[string][]string

func (s tableShape) AddChain(c *nftables.Chain) *nftables.Chain {
	if _, ok := s[c.Name]; !ok {
		s[c.Name] = []string{}
	}
	return c
}

func (s tableShape) AddRule(r *nftables.Rule) *nftables.Rule {
	s[r.Chain.Name] = append(s[r.Chain.Name], ruleSignature(r))
	return r
}

func ruleSignature(r *nftables.Rule) string {
	comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return fmt.Sprintf("%d %s", len(r.Exprs), comment)
}

// diffShapes says what differs between the table as it must be and as it
// is: "" when nothing, else the repair it needs ("table" when the table is
// missing, "rule" when chains or rules differ) and a description for the
// log.
func diffShapes(want, got tableShape) (what, detail string) {
	if got == nil {
		return kindTable, "table missing"
	}
	var diffs []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		rules, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, "chain "+name+" missing")
		case !sameRules(name, rules, want[name]):
			diffs = append(diffs, fmt.Sprintf("chain %s differs (%d rules, %d expected)", name, len(rules), len(want[name])))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, "unexpected chain "+name)
		}
	}
	if len(diffs) == 0 {
		return "", ""
	}
	return kindRule, strings.Join(diffs, "; ")
}

// sameRules compares the rules of a chain. The order of the host port
// rules does not matter: each pod appends its own, and no two pods' rules
// match the same packets.
func sameRules(chain string, got, want []string) bool {
	if chain == chainHostPorts {
		return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
	}
	return slices.Equal(got, want)
}

// wantShape returns the shape rewrite gives the table for the pods that
// snapshot returns.
func (f *firewall) wantShape(snapshot func() []podPorts) tableShape {
	s := tableShape{}
	f.addBaseChains(s)
	for _, p := range snapshot() {
		f.addPodRules(s, p)
	}
	return s
}

// readShape reads the table's shape from the kernel; nil if there is no
// table.
func (f *firewall) readShape(c *nftables.Conn) (tableShape, error) {
	if _, err := c.ListTableOfFamily(f.table.Name, f.table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("read nftables table %s: %w", f.table.Name, err)
	}
	chains, err := c.ListChainsOfTableFamily(f.table.Family)
	if err != nil {
		return nil, fmt.Errorf("list chains of nftables table %s: %w", f.table.Name, err)
	}
	s := tableShape{}
	for _, ch := range chains {
		if ch.Table.Name != f.table.Name {
			continue
		}
		s.AddChain(ch)
		rules, err := c.GetRules(f.table, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s %s: %w", f.table.Name, ch.Name, err)
		}
		for _, r := range rules {
			r.Chain = ch
			s.AddRule(r)
		}
	}
	return s, nil
}

// repair rewrites the table if it differs from what it must hold for the
// pods that snapshot returns. It returns the repair made ("" if none) and
// what was wrong. A per-pod change that lands between the check and the
// rewrite is kept: rewrite takes its snapshot under the firewall's lock.
func (f *firewall) repair(snapshot func() []podPorts) (what, detail string, err error) {
	f.mu.Lock()
	c, err := nftables.New()
	if err != nil {
		f.mu.Unlock()
		return "", "", fmt.Errorf("open nftables: %w", err)
	}
	got, err := f.readShape(c)
	if err != nil {
		f.mu.Unlock()
		return "", "", err
	}
	what, detail = diffShapes(f.wantShape(snapshot), got)
	f.mu.Unlock()
	if what == "" {
		return "", "", nil
	}
	if err := f.rewrite(snapshot); err != nil {
		return "", "", err
	}
	return what, detail, nil
}
