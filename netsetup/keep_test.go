package netsetup

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	clocktesting "k8s.io/utils/clock/testing"
)

// loopRecorder runs a repairLoop on a fake clock and records its rounds.
type loopRecorder struct {
	clock  *clocktesting.FakeClock
	events chan struct{}
	mu     sync.Mutex
	rounds []bool // deep or not
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoop(t *testing.T) *loopRecorder {
	r := &loopRecorder{clock: clocktesting.NewFakeClock(time.Unix(0, 0)), events: make(chan struct{}, 1)}
	l := &repairLoop{clock: r.clock, settle: 50 * time.Millisecond, resync: 30 * time.Second,
		round: func(_ context.Context, deep bool) {
			r.mu.Lock()
			r.rounds = append(r.rounds, deep)
			r.mu.Unlock()
		}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Go(func() { l.run(ctx, r.events) })
	t.Cleanup(func() { cancel(); r.wg.Wait() })
	return r
}

// waitRounds waits, on the real clock, until n rounds ran, and returns
// them.
func (r *loopRecorder) waitRounds(t *testing.T, n int) []bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := append([]bool(nil), r.rounds...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rounds after 10s, want %d", len(got), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitIdle waits until the loop took every event and waits on n timers
// (the resync ticker counts as one).
func (r *loopRecorder) waitIdle(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.events) > 0 || r.clock.Waiters() != n {
		if time.Now().After(deadline) {
			t.Fatalf("loop not idle on %d timers after 10s (%d)", n, r.clock.Waiters())
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *loopRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rounds)
}

func TestRepairLoop(t *testing.T) {
	r := startLoop(t)
	if got := r.waitRounds(t, 1); !got[0] {
		t.Fatalf("first round not deep: %v", got)
	}
	for range 10 {
		hint(r.events)
	}
	r.waitIdle(t, 2) // the ticker and the settle timer
	r.clock.Step(49 * time.Millisecond)
	r.waitIdle(t, 2)
	if n := r.count(); n != 1 {
		t.Errorf("%d rounds before the settle time, want only the first", n)
	}
	r.clock.Step(time.Millisecond)
	got := r.waitRounds(t, 2)
	r.waitIdle(t, 1)
	if n := r.count(); n != 2 || got[1] {
		t.Errorf("rounds after a burst of 10 events = %v, want one shallow round", got[1:])
	}
	r.clock.Step(30 * time.Second)
	if got := r.waitRounds(t, 3); !got[2] {
		t.Errorf("resync round not deep: %v", got)
	}
}

func TestLinkNeedsRepair(t *testing.T) {
	link := func(name string, up bool) netlink.Link {
		a := netlink.LinkAttrs{Name: name}
		if up {
			a.Flags = net.FlagUp
		}
		return &netlink.Bridge{LinkAttrs: a}
	}
	update := func(typ uint16, l netlink.Link) netlink.LinkUpdate {
		u := netlink.LinkUpdate{Link: l}
		u.Header.Type = typ
		return u
	}
	tests := []struct {
		name string
		u    netlink.LinkUpdate
		want bool
	}{
		{"bridge deleted", update(unix.RTM_DELLINK, link("br0", true)), true},
		{"pod veth deleted", update(unix.RTM_DELLINK, link("pp0123456789ab", true)), true},
		{"bridge set down", update(unix.RTM_NEWLINK, link("br0", false)), true},
		{"bridge up", update(unix.RTM_NEWLINK, link("br0", true)), false},
		{"new pod veth", update(unix.RTM_NEWLINK, link("pp0123456789ab", false)), false},
		{"other link deleted", update(unix.RTM_DELLINK, link("eth1", true)), false},
	}
	for _, tt := range tests {
		if got := linkNeedsRepair(tt.u, "br0"); got != tt.want {
			t.Errorf("%s: linkNeedsRepair = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAddrNeedsRepair(t *testing.T) {
	gw := netip.MustParseAddr("10.85.0.1")
	update := func(addr string, added bool) netlink.AddrUpdate {
		return netlink.AddrUpdate{LinkAddress: *ipNet(netip.MustParsePrefix(addr)), NewAddr: added}
	}
	if !addrNeedsRepair(update("10.85.0.1/16", false), gw) {
		t.Errorf("gateway address removed: no repair")
	}
	if addrNeedsRepair(update("10.85.0.1/16", true), gw) {
		t.Errorf("gateway address added: repair")
	}
	if addrNeedsRepair(update("192.0.2.1/24", false), gw) {
		t.Errorf("another address removed: repair")
	}
}

func TestNFTNeedsRepair(t *testing.T) {
	const self = 42
	mine := &nftables.Table{Name: "peapod0", Family: nftables.TableFamilyIPv4}
	gen := func(pid uint32, changes ...*nftables.MonitorEvent) *nftables.MonitorEvents {
		return &nftables.MonitorEvents{
			GeneratedBy: &nftables.MonitorEvent{Data: &nftables.GenMsg{ProcPID: pid}},
			Changes:     changes,
		}
	}
	change := func(data any) *nftables.MonitorEvent { return &nftables.MonitorEvent{Data: data} }
	tests := []struct {
		name string
		e    *nftables.MonitorEvents
		want bool
	}{
		{"table deleted by nft", gen(7, change(mine)), true},
		{"rule deleted by nft", gen(7, change(&nftables.Rule{Table: mine})), true},
		{"chain deleted by nft", gen(7, change(&nftables.Chain{Table: mine})), true},
		{"the agent's own change", gen(self, change(&nftables.Rule{Table: mine})), false},
		{"another table", gen(7, change(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})), false},
		{"a table of the same name in another family", gen(7, change(&nftables.Table{Name: "peapod0", Family: nftables.TableFamilyINet})), false},
		{"an event that could not be read", gen(7, &nftables.MonitorEvent{Error: unix.EINVAL}), true},
		{"the monitor failed", &nftables.MonitorEvents{GeneratedBy: &nftables.MonitorEvent{Type: nftables.MonitorEventTypeOOB, Error: unix.ENOBUFS}}, true},
	}
	for _, tt := range tests {
		if got := nftNeedsRepair(tt.e, "peapod0", self); got != tt.want {
			t.Errorf("%s: nftNeedsRepair = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDiffShapes(t *testing.T) {
	want := tableShape{
		chainGuard:     {"4 "},
		chainHostPorts: {"7 uid1 a", "7 uid2 b"},
	}
	tests := []struct {
		name string
		got  tableShape
		what string
	}{
		{"same", tableShape{chainGuard: {"4 "}, chainHostPorts: {"7 uid1 a", "7 uid2 b"}}, ""},
		{"host port rules in another order", tableShape{chainGuard: {"4 "}, chainHostPorts: {"7 uid2 b", "7 uid1 a"}}, ""},
		{"no table", nil, kindTable},
		{"flushed", tableShape{chainGuard: {}, chainHostPorts: {}}, kindRule},
		{"guard deleted", tableShape{chainHostPorts: {"7 uid1 a", "7 uid2 b"}}, kindRule},
		{"a rule added", tableShape{chainGuard: {"4 ", "2 "}, chainHostPorts: {"7 uid1 a", "7 uid2 b"}}, kindRule},
		{"a chain added", tableShape{chainGuard: {"4 "}, chainHostPorts: {"7 uid1 a", "7 uid2 b"}, "extra": {}}, kindRule},
	}
	for _, tt := range tests {
		if what, detail := diffShapes(want, tt.got); what != tt.what {
			t.Errorf("%s: diffShapes = %q (%s), want %q", tt.name, what, detail, tt.what)
		}
	}
}
