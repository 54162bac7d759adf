package netsetup

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// routeVia adds, in the netns at nsPath, a route to dst through gw: what a
// neighbour on the host's LAN would configure to reach the pods directly.
func routeVia(t *testing.T, nsPath string, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	withPodHandle(t, nsPath, func(h *netlink.Handle) error {
		return h.RouteAdd(&netlink.Route{Dst: ipNet(dst), Gw: gw.AsSlice()})
	})
}

// refusedToPods returns the packet count of the forward filter's drop rule.
func (e *testEnv) refusedToPods() uint64 {
	e.t.Helper()
	c, err := nftables.New()
	if err != nil {
		e.t.Fatal(err)
	}
	rules, err := c.GetRules(e.m.fw.table, e.m.fw.chain(chainToPods))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rules {
		for _, x := range r.Exprs {
			if cnt, ok := x.(*expr.Counter); ok {
				return cnt.Packets
			}
		}
	}
	e.t.Fatalf("no counter in chain %s", chainToPods)
	return 0
}

func logBridgeNetfilter(t *testing.T) {
	v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil {
		t.Logf("br_netfilter: not available (%v): bridged packets skip the IP hooks", err)
		return
	}
	t.Logf("br_netfilter: bridge-nf-call-iptables=%s", strings.TrimSpace(string(v)))
}

// A neighbour on the host's LAN that routes the pod CIDR through the host
// reaches the pods' host ports, and the answers to the pods' own
// connections, but no pod port directly.
func TestForwardFilterLANNeighbour(t *testing.T) {
	e := newTestEnv(t)
	logBridgeNetfilter(t)
	lan := newOutsideHost(t)
	routeVia(t, lan.ns, e.cidr, lan.hostAddr)
	hostPort := uint16(randomInt(t, 20000, 29999))
	nsA, nsB := newNetNS(t), newNetNS(t)
	ipA := e.setup(testPod(t, "a", corev1.ContainerPort{ContainerPort: 8080, HostPort: int32(hostPort)}), nsA)
	ipB := e.setup(testPod(t, "b"), nsB)
	serve(t, nsA, ":8080")
	serve(t, nsA, ":9000")
	serveUDP(t, nsA, ":5353")
	serve(t, lan.ns, ":7070")
	requireRouteVia(t, lan.ns, ipA, podIface)
	requireRouteVia(t, lan.ns, lan.hostAddr, podIface)
	requireRouteVia(t, "", lan.addr, lan.link)
	requireRouteVia(t, nsB, ipA, podIface)

	unpublished := netip.AddrPortFrom(ipA, 9000).String()
	refusedBefore := e.refusedToPods()
	for _, to := range []string{unpublished, netip.AddrPortFrom(ipA, 8080).String()} {
		if got, err := fetch(lan.ns, to); err == nil {
			t.Errorf("LAN neighbour reached pod port %s directly: %q", to, got)
		}
	}
	if got, err := fetchUDP(lan.ns, netip.AddrPortFrom(ipA, 5353).String()); err == nil {
		t.Errorf("LAN neighbour reached pod UDP port 5353 directly: %q", got)
	}
	if e.refusedToPods() == refusedBefore {
		t.Errorf("the forward filter's drop counter did not move: something else refused the neighbour")
	}
	wantOK := []struct{ name, from, to, wantPeer string }{
		{"LAN neighbour -> host port", lan.ns, netip.AddrPortFrom(lan.hostAddr, hostPort).String(), lan.addr.String()},
		// The neighbour has no route back to the pods: only a masqueraded
		// connection, whose answers the filter lets in, works.
		{"pod -> LAN neighbour", nsA, netip.AddrPortFrom(lan.addr, 7070).String(), lan.hostAddr.String()},
		{"pod -> pod", nsB, unpublished, ipB.String()},
		{"host -> pod", "", unpublished, e.gateway().String()},
	}
	for _, c := range wantOK {
		if got, err := fetch(c.from, c.to); err != nil || got != c.wantPeer {
			t.Errorf("%s: got %q, %v; want an answer seeing %s", c.name, got, err, c.wantPeer)
		}
	}

	// The refusals above are the filter's doing: without its rules the
	// neighbour gets through, and Ensure puts them back.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	c.FlushChain(e.m.fw.chain(chainForward))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := fetch(lan.ns, unpublished); err != nil || got != lan.addr.String() {
		t.Fatalf("without the filter: got %q, %v; want the neighbour to reach %s (is the test's route right?)", got, err, unpublished)
	}
	if err := e.m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := fetch(lan.ns, unpublished); err == nil {
		t.Errorf("after Ensure, the LAN neighbour still reaches %s: %q", unpublished, got)
	}
}

// Two agents on one host, each with its own bridge and table, neither
// refuse the other's traffic nor lose their rules when the other rewrites
// its table. Their pods reach each other through host ports only.
func TestForwardFilterPerBridge(t *testing.T) {
	e1 := newTestEnv(t)
	e2 := newTestEnvCIDR(t, testPodCIDR(t))
	lan := newOutsideHost(t)
	type side struct {
		e        *testEnv
		ns       string
		uid      types.UID
		ip       netip.Addr
		hostPort uint16
	}
	// Two agents cannot share a host port: the ranges keep them apart.
	sides := []*side{{e: e1, hostPort: uint16(randomInt(t, 20000, 24999))}, {e: e2, hostPort: uint16(randomInt(t, 25000, 29999))}}
	for _, s := range sides {
		routeVia(t, lan.ns, s.e.cidr, lan.hostAddr)
		pod := testPod(t, "web", corev1.ContainerPort{ContainerPort: 8080, HostPort: int32(s.hostPort)})
		s.ns, s.uid = newNetNS(t), pod.UID
		s.ip = s.e.setup(pod, s.ns)
		serve(t, s.ns, ":8080")
		requireRouteVia(t, lan.ns, s.ip, podIface)
	}
	check := func(when string) {
		t.Helper()
		for i, s := range sides {
			other := sides[1-i]
			direct := netip.AddrPortFrom(s.ip, 8080).String()
			if got, err := fetch(lan.ns, direct); err == nil {
				t.Errorf("%s: LAN neighbour reached %s directly: %q", when, direct, got)
			}
			if got, err := fetch(other.ns, direct); err == nil {
				t.Errorf("%s: a pod of the other bridge reached %s directly: %q", when, direct, got)
			}
			viaLAN := netip.AddrPortFrom(lan.hostAddr, s.hostPort).String()
			if got, err := fetch(lan.ns, viaLAN); err != nil || got != lan.addr.String() {
				t.Errorf("%s: LAN neighbour -> host port %s: got %q, %v", when, viaLAN, got, err)
			}
			viaGateway := netip.AddrPortFrom(s.e.gateway(), s.hostPort).String()
			if got, err := fetch(other.ns, viaGateway); err != nil || got != s.e.gateway().String() {
				t.Errorf("%s: pod of the other bridge -> host port %s: got %q, %v; want an answer seeing %s",
					when, viaGateway, got, err, s.e.gateway())
			}
		}
	}
	check("both set up")

	// The first agent restarts: its table is rewritten and collected.
	e1.m = e1.newManager()
	if err := e1.m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e1.m.GC(context.Background(), map[types.UID]bool{sides[0].uid: true}); err != nil {
		t.Fatal(err)
	}
	if got := e2.hostPortRules(); len(got) != 1 || got[0] != string(sides[1].uid) {
		t.Errorf("the other agent's host port rules after a rewrite: %v, want %s", got, sides[1].uid)
	}
	check("after the first agent rewrote its table")
}
