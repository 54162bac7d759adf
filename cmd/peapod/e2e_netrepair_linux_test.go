package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
)

// TestNetRepair breaks the host network of a running pod as an operator or
// a firewall reload would (the bridge deleted, the nftables table flushed,
// then deleted, the pod's veth deleted) and checks after each that the
// agent repairs it by itself and counts it in /metrics: host → pod, pod →
// outside host (masquerade), the host port from the outside host and from
// 127.0.0.1 all answer again, the localnet guard is back, and the pod
// stays Running. A new pod starts at the end. The latencies are logged: the
// time until the repair is counted, and until every check answers.
func TestNetRepair(t *testing.T) {
	requireRoot(t)
	out := netNewOutside(t)
	netServeOutside(t, out, 7000)
	netCheckRoute(t, out.addr, out.hostVeth)
	a := newRootAgent(t)
	hostPort := netFreePort(t)
	gateway := a.PodCIDR.Addr().Next()
	a.start()
	a.writeManifest("hp.yaml", netHostPortPod("net-hp", a.Image, hostPort,
		netip.AddrPortFrom(out.addr, 7000), netip.AddrPortFrom(gateway, hostPort)))
	hp := a.waitPod("default/net-hp", "running with an IP", 60*time.Second, netRunningWithIP)
	podIP := netPodIP(t, a, hp)
	podNS, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", a.mainPID(hp, "web")))
	if err != nil {
		t.Fatal(err)
	}
	defer podNS.Close()
	inPod := &netOutside{ns: podNS}
	netCheckRoute(t, podIP, a.Bridge)
	netCheckLocal(t, gateway, a.Bridge)

	const page = "hello from net-hp"
	check := func() error {
		// Without the bridge the host would route the pod's address
		// through its default route: never send there.
		if err := netRouteVia(podIP, a.Bridge); err != nil {
			return err
		}
		if err := netExpectBody(fmt.Sprintf("http://%s/", netip.AddrPortFrom(podIP, 8080)), page); err != nil {
			return fmt.Errorf("host → pod: %w", err)
		}
		if err := netExpectBody(fmt.Sprintf("http://127.0.0.1:%d/", hostPort), page); err != nil {
			return fmt.Errorf("host → 127.0.0.1:hostPort: %w", err)
		}
		if err := netExpectBodyFrom(out, netip.AddrPortFrom(out.hostAddr, hostPort), page); err != nil {
			return fmt.Errorf("outside host → hostPort: %w", err)
		}
		return inPod.do(func() error {
			if err := netExpectBody(fmt.Sprintf("http://%s/", netip.AddrPortFrom(out.addr, 7000)), "outside"); err != nil {
				return fmt.Errorf("pod → outside host: %w", err)
			}
			return nil
		})
	}
	a.eventually("connectivity before any damage", 60*time.Second, check)

	damages := []struct {
		name, what string
		cmd        func() []string
	}{
		{"bridge deleted", "bridge", func() []string { return []string{"ip", "link", "del", a.Bridge} }},
		{"table flushed", "rule", func() []string { return []string{"nft", "flush", "table", "ip", a.Bridge} }},
		{"table deleted", "table", func() []string { return []string{"nft", "delete", "table", "ip", a.Bridge} }},
		{"pod veth deleted", "veth", func() []string {
			ports := netBridgePorts(t, a.Bridge)
			if len(ports) != 1 {
				t.Fatalf("bridge ports %v, want the one of net-hp", ports)
			}
			return []string{"ip", "link", "del", ports[0]}
		}},
	}
	for _, d := range damages {
		before := repairsCounted(t, a, d.what)
		args := d.cmd()
		start := time.Now()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		a.eventually(d.what+" repair counted", 30*time.Second, func() error {
			if n := repairsCounted(t, a, d.what); n <= before {
				return fmt.Errorf("peapod_network_repairs_total{what=%q} = %v", d.what, n)
			}
			return nil
		})
		counted := time.Since(start)
		a.eventually("connectivity after: "+d.name, 30*time.Second, check)
		t.Logf("%s: repair counted after %v, every check answered after %v", d.name, counted.Round(time.Millisecond),
			time.Since(start).Round(time.Millisecond))
		guard, err := exec.Command("nft", "list", "chain", "ip", a.Bridge, "localnet-guard").CombinedOutput()
		if err != nil || !strings.Contains(string(guard), "ip daddr 127.0.0.0/8 drop") {
			t.Errorf("after %s, the localnet guard: %v\n%s", d.name, err, guard)
		}
		if p := a.pod("default/net-hp"); p == nil || running(p) != nil || p.Status.Reason != "" {
			t.Errorf("after %s, net-hp is %+v", d.name, p)
		}
	}

	a.writeManifest("web.yaml", netWebPod(a.Image))
	a.waitPod("default/net-web", "running with an IP", 60*time.Second, netRunningWithIP)
}

// netRouteVia returns an error unless the host routes dst through link.
func netRouteVia(dst netip.Addr, link string) error {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return fmt.Errorf("route to %s: %v", dst, err)
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil || l.Attrs().Name != link {
		return fmt.Errorf("the host routes %s through %v (%v), not %s: not sending", dst, l, err, link)
	}
	return nil
}

// repairsCounted reads peapod_network_repairs_total{what} from /metrics.
func repairsCounted(t *testing.T, a *rootAgent, what string) float64 {
	t.Helper()
	return metricValue(t, a, fmt.Sprintf("peapod_network_repairs_total{what=%q} ", what))
}

// metricValue reads from /metrics the value of the series whose line
// starts with prefix (name, labels and a space).
func metricValue(t *testing.T, a *rootAgent, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /metrics", strings.TrimSpace(prefix))
	return 0
}

// TestNetRepairUnavailable breaks a running pod's network beyond repair
// (its loopback renamed eth0, which cannot be deleted, then its veth
// deleted) and checks that the agent never shows it healthy: status
// reason NetworkUnavailable, Ready false, `peapod ps` 0/1
// NetworkUnavailable, peapod_network_unavailable_pods 1. Once the pod's
// loopback has its name back, the next repair round gives the pod its
// network again and it is ready.
func TestNetRepairUnavailable(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("web.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: net-broken}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: %q
    command: [sh, -c, 'mkdir -p /w && echo up >/w/index.html && exec httpd -f -p 8080 -h /w']
`, a.Image))
	p := a.waitPod("default/net-broken", "running with an IP", 60*time.Second, netRunningWithIP)
	podIP := netPodIP(t, a, p)
	ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", a.mainPID(p, "web")))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return h.LinkSetName(eth, "old0") },
		func() error { return h.LinkSetDown(lo) },
		func() error { return h.LinkSetName(lo, "eth0") },
		func() error { return h.LinkDel(eth) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	p = a.waitPod("default/net-broken", "NetworkUnavailable", 30*time.Second, func(p *corev1.Pod) error {
		if p.Status.Reason != "NetworkUnavailable" {
			return fmt.Errorf("reason %q", p.Status.Reason)
		}
		return nil
	})
	t.Logf("net-broken: %s: %s", p.Status.Reason, p.Status.Message)
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
			t.Errorf("Ready = %s with no network", c.Status)
		}
	}
	out, _ := runPeapod(t, "ps", "--state", a.cfg.State)
	if !regexp.MustCompile(`net-broken\s+0/1\s+NetworkUnavailable`).MatchString(out) {
		t.Errorf("peapod ps:\n%s\nwant net-broken 0/1 NetworkUnavailable", out)
	}
	if n := metricValue(t, a, "peapod_network_unavailable_pods "); n != 1 {
		t.Errorf("peapod_network_unavailable_pods = %v, want 1", n)
	}

	// The loopback back, and an event for the agent: a veth pair of the
	// test's own, named like a pod veth, made and deleted.
	if err := h.LinkSetName(lo, "lo"); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	suffix := randomHex(t, 4)
	poke := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ppd" + suffix}, PeerName: "ppp" + suffix}
	if err := netlink.LinkAdd(poke); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(poke); err != nil {
		t.Fatal(err)
	}
	a.waitPod("default/net-broken", "ready again", 60*time.Second, func(p *corev1.Pod) error {
		if p.Status.Reason != "" || len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready {
			return fmt.Errorf("reason %q, statuses %+v", p.Status.Reason, p.Status.ContainerStatuses)
		}
		return nil
	})
	a.eventually("host → net-broken", 30*time.Second, func() error {
		if err := netRouteVia(podIP, a.Bridge); err != nil {
			return err
		}
		return netExpectBody(fmt.Sprintf("http://%s/", netip.AddrPortFrom(podIP, 8080)), "up")
	})
	if n := metricValue(t, a, "peapod_network_unavailable_pods "); n != 0 {
		t.Errorf("peapod_network_unavailable_pods = %v, want 0", n)
	}
}
