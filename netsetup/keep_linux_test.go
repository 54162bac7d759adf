package netsetup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// repairDeadline bounds the wait for a repair and the connectivity after
// it: generous, for a busy machine. The latency is logged, not asserted.
const repairDeadline = 20 * time.Second

// keptEnv is a testEnv whose Manager runs Keep, with two pods: a serves
// on a host port, b is a client. Traffic goes only to the pods, the
// test's outside host and the bridge.
type keptEnv struct {
	*testEnv
	out         *outsideHost
	hostPort    uint16
	nsA, nsB    string
	podA, podB  *corev1.Pod
	ipA, ipB    netip.Addr
	mu          sync.Mutex // the lock of Setup, Teardown and Keep's rounds
	pods        []PodNetNS
	repairs     map[string]int
	lastRepair  time.Time
	unavailable map[types.UID]error
	rounds      int
}

func newKeptEnv(t *testing.T) *keptEnv {
	k := &keptEnv{testEnv: newTestEnv(t), repairs: map[string]int{}}
	k.out = newOutsideHost(t)
	k.hostPort = uint16(randomInt(t, 20000, 29999))
	k.nsA, k.nsB = newNetNS(t), newNetNS(t)
	k.podA = testPod(t, "a", corev1.ContainerPort{ContainerPort: 8080, HostPort: int32(k.hostPort)})
	k.podB = testPod(t, "b")
	k.ipA, k.ipB = k.setup(k.podA, k.nsA), k.setup(k.podB, k.nsB)
	serve(t, k.nsA, ":8080")
	serve(t, k.out.ns, ":7070")
	k.pods = []PodNetNS{{UID: k.podA.UID, NetNSPath: k.nsA}, {UID: k.podB.UID, NetNSPath: k.nsB}}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		k.m.Keep(ctx, KeepOptions{
			Pods: func(context.Context) ([]PodNetNS, error) { return k.pods, nil },
			Lock: &k.mu,
			Report: func(r RepairResult) {
				k.rounds++
				for what, n := range r.Repairs {
					k.repairs[what] += n
					k.lastRepair = time.Now()
				}
				k.unavailable = r.Unavailable
			},
		})
	})
	k.waitFor("the first round", func() bool { return k.rounds > 0 })
	k.checkConnectivity()
	return k
}

// setupLocked runs Setup as the agent does: with the lock shared with
// Keep's rounds.
func (k *keptEnv) setupLocked(pod *corev1.Pod, nsPath string) netip.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	addr := k.setup(pod, nsPath)
	k.pods = append(k.pods, PodNetNS{UID: pod.UID, NetNSPath: nsPath})
	return addr
}

// waitFor polls cond, under the lock, until it holds.
func (k *keptEnv) waitFor(what string, cond func() bool) {
	k.t.Helper()
	deadline := time.Now().Add(repairDeadline)
	for {
		k.mu.Lock()
		ok := cond()
		k.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("no %s after %v", what, repairDeadline)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// repaired waits until Keep has counted the repairs of every kind in want
// since the damage at start, and returns the repairs made and when the
// last was.
func (k *keptEnv) repaired(start time.Time, want ...string) (map[string]int, time.Duration) {
	k.t.Helper()
	var got map[string]int
	var latency time.Duration
	k.waitFor(fmt.Sprintf("repair of %v", want), func() bool {
		for _, what := range want {
			if k.repairs[what] == 0 {
				return false
			}
		}
		got, latency = maps.Clone(k.repairs), k.lastRepair.Sub(start)
		return true
	})
	return got, latency
}

// eventually retries check until it succeeds.
func (k *keptEnv) eventually(what string, check func() error) {
	k.t.Helper()
	deadline := time.Now().Add(repairDeadline)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkConnectivity checks host -> pod, pod -> pod, pod -> outside host
// (masquerade) and the host port from the outside host and the host.
func (k *keptEnv) checkConnectivity() {
	k.t.Helper()
	requireRouteVia(k.t, "", k.ipA, k.bridge)
	requireRouteVia(k.t, "", k.out.addr, k.out.link)
	requireRouteVia(k.t, k.out.ns, k.out.hostAddr, podIface)
	hp := netip.AddrPortFrom(k.out.hostAddr, k.hostPort).String()
	checks := []struct {
		what, from, to, want string
	}{
		{"host -> pod", "", netip.AddrPortFrom(k.ipA, 8080).String(), k.gateway().String()},
		{"pod -> pod", k.nsB, netip.AddrPortFrom(k.ipA, 8080).String(), k.ipB.String()},
		{"pod -> outside host", k.nsB, netip.AddrPortFrom(k.out.addr, 7070).String(), k.out.hostAddr.String()},
		{"outside host -> host port", k.out.ns, hp, k.out.addr.String()},
		{"host -> 127.0.0.1:host port", "", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), k.hostPort).String(), k.gateway().String()},
	}
	for _, c := range checks {
		k.eventually(c.what, func() error {
			// Without the bridge the host would route a pod's address
			// through its default route: never send there.
			if err := checkRouteVia("", k.ipA, k.bridge); err != nil {
				return err
			}
			got, err := fetch(c.from, c.to)
			if err == nil && got != c.want {
				err = fmt.Errorf("the server saw %s, not %s", got, c.want)
			}
			return err
		})
	}
}

// checkTable fails unless the table holds exactly what Ensure and Setup
// wrote, the localnet guard included.
func (k *keptEnv) checkTable() {
	k.t.Helper()
	c, err := nftables.New()
	if err != nil {
		k.t.Fatal(err)
	}
	got, err := k.m.fw.readShape(c)
	if err != nil {
		k.t.Fatal(err)
	}
	if what, detail := diffShapes(k.m.fw.wantShape(k.m.ports.all), got); what != "" {
		k.t.Errorf("table after repair: %s", detail)
	}
	if len(got[chainGuard]) != 1 {
		k.t.Errorf("localnet guard chain has %d rules, want 1", len(got[chainGuard]))
	}
}

// checkNewPod checks that a new pod starts and is reachable.
func (k *keptEnv) checkNewPod() {
	k.t.Helper()
	ns := newNetNS(k.t)
	ip := k.setupLocked(testPod(k.t, "new"), ns)
	serve(k.t, ns, ":8080")
	requireRouteVia(k.t, "", ip, k.bridge)
	k.eventually("host -> new pod", func() error {
		if err := checkRouteVia("", ip, k.bridge); err != nil {
			return err
		}
		_, err := fetch("", netip.AddrPortFrom(ip, 8080).String())
		return err
	})
}

func runCmd(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// checkRouteVia returns an error unless, seen from the netns at nsPath, dst is
// routed through the link named via.
func checkRouteVia(nsPath string, dst netip.Addr, via string) error {
	return inNS(nsPath, func() error {
		routes, err := netlink.RouteGet(dst.AsSlice())
		if err != nil || len(routes) == 0 {
			return fmt.Errorf("route to %s: %v", dst, err)
		}
		link, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil || link.Attrs().Name != via {
			return fmt.Errorf("route to %s goes through %v (%v), not %s: not sending", dst, link, err, via)
		}
		return nil
	})
}

func podMACIn(t *testing.T, nsPath string) string {
	var mac string
	withPodHandle(t, nsPath, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(podIface)
		if err == nil {
			mac = eth.Attrs().HardwareAddr.String()
		}
		return err
	})
	return mac
}

func TestKeepRepairsDeletedBridge(t *testing.T) {
	k := newKeptEnv(t)
	start := time.Now()
	runCmd(t, "ip", "link", "del", k.bridge)
	got, latency := k.repaired(start, kindBridge, kindVeth, kindSysctl)
	t.Logf("bridge deleted: repaired in %v: %v", latency, got)
	if got[kindVeth] != 2 {
		t.Errorf("veth repairs = %d, want 2 (both pods reattached)", got[kindVeth])
	}
	if v := readSysctlIn(t, "", "net/ipv4/conf/"+k.bridge+"/route_localnet"); strings.TrimSpace(v) != "1" {
		t.Errorf("route_localnet on the new bridge = %q", v)
	}
	k.checkConnectivity()
	k.checkTable()
	k.checkNewPod()
}

func TestKeepRepairsFlushedTable(t *testing.T) {
	k := newKeptEnv(t)
	start := time.Now()
	// As `nft flush table`, through the library: the VM's guest has no nft.
	nftDo(t, func(c *nftables.Conn) { c.FlushTable(k.m.fw.table) })
	got, latency := k.repaired(start, kindRule)
	t.Logf("table flushed: repaired in %v: %v", latency, got)
	k.checkTable()
	k.checkConnectivity()
	k.checkNewPod()
}

func TestKeepRepairsDeletedTable(t *testing.T) {
	k := newKeptEnv(t)
	start := time.Now()
	nftDo(t, func(c *nftables.Conn) { c.DelTable(k.m.fw.table) })
	got, latency := k.repaired(start, kindTable)
	t.Logf("table deleted: repaired in %v: %v", latency, got)
	k.checkTable()
	k.checkConnectivity()
	k.checkNewPod()
}

func TestKeepRepairsDeletedRule(t *testing.T) {
	k := newKeptEnv(t)
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(k.m.fw.table, k.m.fw.chain(chainGuard))
	if err != nil || len(rules) != 1 {
		t.Fatalf("localnet guard rules: %v, %v", rules, err)
	}
	start := time.Now()
	nftDo(t, func(c *nftables.Conn) { c.DelRule(rules[0]) })
	got, latency := k.repaired(start, kindRule)
	t.Logf("localnet guard rule deleted: repaired in %v: %v", latency, got)
	k.checkTable()
}

func TestKeepRepairsDeletedVeth(t *testing.T) {
	k := newKeptEnv(t)
	mac := podMACIn(t, k.nsA)
	start := time.Now()
	runCmd(t, "ip", "link", "del", vethName(k.podA.UID))
	got, latency := k.repaired(start, kindVeth)
	t.Logf("pod veth deleted: repaired in %v: %v", latency, got)
	if after := podMACIn(t, k.nsA); after != mac {
		t.Errorf("pod MAC changed from %s to %s", mac, after)
	}
	addrs, gw := podView(t, k.nsA)
	if want := netip.PrefixFrom(k.ipA, k.cidr.Bits()).String(); len(addrs) != 1 || addrs[0] != want || gw != k.gateway().String() {
		t.Errorf("pod after repair: addresses %v, gateway %s; want %s via %s", addrs, gw, want, k.gateway())
	}
	k.checkConnectivity()
	k.checkNewPod()
}

func TestKeepRepairsPodAddress(t *testing.T) {
	k := newKeptEnv(t)
	withPodHandle(t, k.nsB, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(podIface)
		if err != nil {
			return err
		}
		return h.AddrDel(eth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(k.ipB, k.cidr.Bits()))})
	})
	// Inside a pod's netns there is no event to see: the deep round finds
	// it; run one now rather than wait for the resync.
	k.mu.Lock()
	res, err := k.m.Repair(context.Background(), k.pods, true)
	k.mu.Unlock()
	if err != nil || res.Repairs[kindAddress] != 1 {
		t.Fatalf("deep repair: %v, %v; want one address repair", res.Repairs, err)
	}
	k.checkConnectivity()
}

// A pod whose eth0 cannot be made again is reported, and the other pods
// keep being repaired. Here the pod's loopback took the name eth0 before
// its veth was deleted: a loopback device cannot be deleted.
func TestKeepReportsUnrepairablePod(t *testing.T) {
	k := newKeptEnv(t)
	withPodHandle(t, k.nsA, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(podIface)
		if err != nil {
			return err
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		// Down first: before Linux 6.2 a device that is up cannot be
		// renamed (EBUSY).
		if err := h.LinkSetDown(eth); err != nil {
			return err
		}
		if err := h.LinkSetName(eth, "old0"); err != nil {
			return err
		}
		if err := h.LinkSetDown(lo); err != nil {
			return err
		}
		if err := h.LinkSetName(lo, podIface); err != nil {
			if errors.Is(err, unix.EBUSY) {
				t.Skipf("this kernel refuses to rename the loopback device (%v): no way to make the pod unrepairable", err)
			}
			return err
		}
		return h.LinkDel(eth)
	})
	k.waitFor("report of pod a", func() bool { return k.unavailable[k.podA.UID] != nil })
	k.mu.Lock()
	err := k.unavailable[k.podA.UID]
	others := len(k.unavailable)
	k.mu.Unlock()
	t.Logf("pod a reported: %v", err)
	if others != 1 {
		t.Errorf("%d pods reported, want only pod a", others)
	}
	start := time.Now()
	runCmd(t, "ip", "link", "del", vethName(k.podB.UID))
	_, latency := k.repaired(start, kindVeth)
	t.Logf("pod b's veth repaired in %v beside the broken pod a", latency)
	requireRouteVia(t, "", k.ipB, k.bridge)
	k.eventually("pod b -> outside host", func() error {
		if err := checkRouteVia("", k.out.addr, k.out.link); err != nil {
			return err
		}
		_, err := fetch(k.nsB, netip.AddrPortFrom(k.out.addr, 7070).String())
		return err
	})
}

// In a healthy steady state a deep round repairs nothing, and Keep's own
// changes (a Setup's veth and rules) start no repair.
func TestKeepRepairsNothingWhenHealthy(t *testing.T) {
	k := newKeptEnv(t)
	k.checkNewPod()
	k.setupLocked(testPod(t, "ports", corev1.ContainerPort{ContainerPort: 80, HostPort: int32(k.hostPort) + 1}), newNetNS(t))
	k.mu.Lock()
	res, err := k.m.Repair(context.Background(), k.pods, true)
	repairs := maps.Clone(k.repairs)
	k.mu.Unlock()
	if err != nil || len(res.Repairs) != 0 || len(res.Unavailable) != 0 {
		t.Errorf("deep repair of a healthy host: %v, %v, %v", res.Repairs, res.Unavailable, err)
	}
	if len(repairs) != 0 {
		t.Errorf("Keep repaired a healthy host: %v", repairs)
	}
}

// nftDo applies one change made by fn to the kernel's ruleset, as the nft
// command would.
func nftDo(t *testing.T, fn func(*nftables.Conn)) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	fn(c)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
