package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// holdings is what an agent holds on the host, scoped to its own bridge,
// pod CIDR, cgroup parent and directories: the leak check compares it with
// what the same agent held when it had no pod. Each entry is one line a
// person can act on ("lease 10.1.2.3", "cgroup /sys/fs/cgroup/...").
type holdings struct {
	items map[string][]string // kind → sorted items
}

// holdingKinds are the kinds the leak check covers, in report order.
var holdingKinds = []string{"veth", "mount", "cgroup", "lease", "userns", "hostport", "nft", "pod dir", "process"}

// holdings reads what the agent holds now. ignoreMounts are mount points
// this program made itself (the fault mode's tmpfs).
func (a *testAgent) holdings(ignoreMounts []string) (*holdings, error) {
	h := &holdings{items: map[string][]string{}}
	add := func(kind, item string) { h.items[kind] = append(h.items[kind], item) }

	// veths: every port of the bridge, and any link named after a pod
	// this agent ever reported (a veth that lost its bridge).
	if br, err := netlink.LinkByName(a.bridge); err == nil {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		names := map[string]bool{}
		for uid := range a.uids {
			names[vethName(uid)] = true
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index || names[l.Attrs().Name] {
				add("veth", l.Attrs().Name)
			}
		}
	}
	for _, m := range mountsUnder(a.dir) {
		if !slices.Contains(ignoreMounts, m) {
			add("mount", m)
		}
	}
	for _, d := range cgroupDirs(a.cgroupParent) {
		filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && path != d {
				procs, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
				add("cgroup", fmt.Sprintf("%s (processes: %s)", path, strings.Join(strings.Fields(string(procs)), " ")))
			}
			return nil
		})
	}
	for kind, dir := range map[string]string{
		"lease":    filepath.Join(a.state, "ipam", strings.ReplaceAll(a.cidr.String(), "/", "_")),
		"userns":   filepath.Join(a.state, "userns"),
		"hostport": filepath.Join(a.state, "hostports"),
	} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			add(kind, fmt.Sprintf("%s (%s)", filepath.Join(dir, e.Name()), strings.TrimSpace(string(b))))
		}
	}
	rules, err := nftRules(a.bridge)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		add("nft", r)
	}
	for _, d := range []string{filepath.Join(a.state, "pods"), filepath.Join(a.root, "pods")} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			add("pod dir", filepath.Join(d, e.Name()))
		}
	}
	for _, p := range a.processes() {
		// The spare shim is there with no pod, and is replaced (a new
		// PID) when a pod takes it: it counts by its role, not its PID.
		if strings.Contains(p.cmdline, "--spare") {
			add("process", "spare shim")
			continue
		}
		add("process", fmt.Sprintf("%d %s", p.pid, p.cmdline))
	}
	for k := range h.items {
		slices.Sort(h.items[k])
	}
	return h, nil
}

// diff lists what h holds and base did not (each item once per extra
// occurrence).
func (h *holdings) diff(base *holdings) []string {
	var out []string
	for _, kind := range holdingKinds {
		left := slices.Clone(base.items[kind])
		for _, it := range h.items[kind] {
			if i := slices.Index(left, it); i >= 0 {
				left = slices.Delete(left, i, i+1)
				continue
			}
			out = append(out, kind+": "+it)
		}
	}
	return out
}

// count is the number of items of kind.
func (h *holdings) count(kind string) int { return len(h.items[kind]) }

// nftRules describes each rule and set element of the agent's nftables
// table (ip <bridge>), by chain.
func nftRules(table string) ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			out = append(out, fmt.Sprintf("rule in chain %s: %x", ch.Name, r.UserData)+describeExprs(r))
		}
	}
	tbl := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	sets, err := c.GetSets(tbl)
	if err == nil {
		for _, s := range sets {
			elems, err := c.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
			}
			for _, e := range elems {
				out = append(out, fmt.Sprintf("element of set %s: %x", s.Name, e.Key))
			}
		}
	}
	return out, nil
}

// describeExprs names a rule by its expressions' types and values, enough
// to tell a pod's DNAT rule from the table's fixed rules.
func describeExprs(r *nftables.Rule) string {
	var b strings.Builder
	for _, e := range r.Exprs {
		fmt.Fprintf(&b, " %T%+v", e, e)
	}
	return b.String()
}

// vethName is the host-side name netsetup gives a pod's veth: "pp" and 12
// hex digits of a hash of the UID (netsetup/link_linux.go).
func vethName(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return "pp" + hex.EncodeToString(sum[:6])
}

// recordBaseline remembers what the agent holds with no pod; the agent
// must be running and have no pod.
func (a *testAgent) recordBaseline(ctx context.Context, ignoreMounts []string) error {
	// The spare shim starts shortly after the agent.
	var h *holdings
	err := poll(ctx, 20*time.Second, "the agent's spare shim", func() error {
		var err error
		if h, err = a.holdings(ignoreMounts); err != nil {
			return err
		}
		if h.count("process") == 0 {
			return errors.New("no spare shim yet")
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.baseline = h
	return nil
}

// leakCheck removes every manifest, waits for every pod to go, and
// compares what the agent holds with its baseline; then it stops the
// agent and checks that no process of it is left. The report names every
// leftover.
func (a *testAgent) leakCheck(ctx context.Context, ignoreMounts []string) (string, error) {
	entries, _ := os.ReadDir(a.manifests)
	for _, e := range entries {
		if err := os.Remove(filepath.Join(a.manifests, e.Name())); err != nil {
			return "", err
		}
	}
	if !a.running() {
		if err := a.start(ctx); err != nil {
			return "", err
		}
	}
	if err := a.waitNoPods(ctx, 2*time.Minute); err != nil {
		return "", fmt.Errorf("leak check: %w", err)
	}
	// Removal is asynchronous in places (the spare shim is replaced 150
	// ms after a pod takes it): give the agent time to settle, then judge.
	var left []string
	poll(ctx, 30*time.Second, "", func() error {
		h, err := a.holdings(ignoreMounts)
		if err != nil {
			return err
		}
		if left = h.diff(a.baseline); len(left) > 0 {
			return errors.New("leftovers")
		}
		return nil
	})
	if err := a.stop(); err != nil {
		left = append(left, "agent: "+err.Error())
	}
	var procs []proc
	poll(ctx, 15*time.Second, "", func() error {
		if procs = a.processes(); len(procs) > 0 {
			return errors.New("processes left")
		}
		return nil
	})
	for _, p := range procs {
		left = append(left, fmt.Sprintf("process after the agent stopped: %d %s", p.pid, p.cmdline))
	}
	summary := fmt.Sprintf("leak check over %d pod UIDs: veths, mounts, cgroups, leases, userns reservations, host ports, nft rules, pod dirs, processes", len(a.uids))
	if len(left) > 0 {
		return summary, fmt.Errorf("%s: %d leftovers 30s after the last pod went:\n  %s", a, len(left), strings.Join(left, "\n  "))
	}
	return summary + ": none left", nil
}
