package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
)

// These tests are the acceptance of pod networking, end to end through the
// agent, checked from outside as a user would: ip and nsenter, HTTP from Go,
// the status API. Traffic only ever goes to loopback, to pod IPs in the test
// agent's CIDR, or to an "outside host": a network namespace the test makes,
// on a veth it makes, in a TEST-NET range no host route covers.

// TestNetPodToPod runs a web pod and a client pod and checks their
// addresses, eth0 and default route; host → pod on 8080 and on port 80
// (bound by container root); pod → pod; that a 127.0.0.1 listener of the
// pod is reachable from neither the host nor the other pod; and the pod's
// resolv.conf (dnsPolicy None + dnsConfig) and /etc/hosts.
func TestNetPodToPod(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("web.yaml", netWebPod(a.Image))
	web := a.waitPod("default/net-web", "running with an IP", 60*time.Second, netRunningWithIP)
	webIP := netPodIP(t, a, web)

	a.writeManifest("client.yaml", netClientPod(a.Image, webIP))
	client := a.waitPod("default/net-client", "running with an IP", 60*time.Second, netRunningWithIP)
	clientIP := netPodIP(t, a, client)
	if webIP == clientIP {
		t.Fatalf("both pods got %s", webIP)
	}

	gateway := a.PodCIDR.Addr().Next()
	for _, p := range []struct {
		pod       *corev1.Pod
		container string
		ip        netip.Addr
	}{{web, "web", webIP}, {client, "probe", clientIP}} {
		netCheckEth0(t, a.mainPID(p.pod, p.container), netip.PrefixFrom(p.ip, a.PodCIDR.Bits()), gateway)
	}

	// Host → pod, on the pod's address through the bridge.
	netCheckRoute(t, webIP, a.Bridge)
	for port, want := range map[int]string{8080: "hello from net-web", 80: "root binds port 80"} {
		url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(webIP, uint16(port)))
		a.eventually("host GET "+url, 30*time.Second, func() error { return netExpectBody(url, want) })
	}

	// The loopback-only listener answers inside the pod (so the negative
	// checks below mean something), and refuses the host.
	webPID := a.mainPID(web, "web")
	a.eventually("127.0.0.1:9090 answers inside net-web", 30*time.Second, func() error {
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(webPID), "-n",
			"timeout", "5", "busybox", "wget", "-q", "-O-", "http://127.0.0.1:9090/").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "loopback only") {
			return fmt.Errorf("wget in the pod netns: %v: %s", err, out)
		}
		return nil
	})
	if _, err := net.DialTimeout("tcp", netip.AddrPortFrom(webIP, 9090).String(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("host → %s:9090 (a 127.0.0.1 listener): got %v, want connection refused", webIP, err)
	}

	// Pod → pod: the client fetched the web pod, and was refused on 9090.
	clientPID := a.mainPID(client, "probe")
	out := netWaitFile(t, a, clientPID, "/out/done", 60*time.Second)
	if web := netReadFile(t, clientPID, "/out/web"); !strings.Contains(web, "hello from net-web") {
		t.Errorf("net-client → net-web:8080: got %q, want the page (probe log: %q)", web, out)
	}
	if local := netReadFile(t, clientPID, "/out/local"); !strings.Contains(local, "refused") {
		t.Errorf("net-client → net-web:9090 (a 127.0.0.1 listener): got %q, want connection refused", local)
	}

	// DNS: dnsPolicy None plus dnsConfig, exactly; /etc/hosts names the
	// pod's hostname at its IP.
	wantResolv := "nameserver 198.51.100.53\nnameserver 203.0.113.53\n" +
		"search pods.example.test example.test\noptions ndots:2 edns0\n"
	if got := netReadFile(t, webPID, "/etc/resolv.conf"); got != wantResolv {
		t.Errorf("net-web /etc/resolv.conf:\n%s\nwant:\n%s", got, wantResolv)
	}
	hosts := netReadFile(t, webPID, "/etc/hosts")
	if !netHasLine(hosts, webIP.String(), "web-host") || !netHasLine(hosts, "127.0.0.1", "localhost") {
		t.Errorf("net-web /etc/hosts has no line %q or 127.0.0.1 localhost:\n%s", webIP.String()+" web-host", hosts)
	}
}

// TestNetHostPortAndMasquerade runs a pod with a hostPort next to an
// outside host (a netns on a test veth): the pod reaches the outside host
// masqueraded behind the host's address; the host port answers from the
// outside host, on 127.0.0.1 and on the bridge address; a second pod asking
// for the same port is held Pending with a message naming the first, which
// keeps working; after teardown the port stops answering and no veth, lease
// or DNAT rule of the pod is left.
func TestNetHostPortAndMasquerade(t *testing.T) {
	requireRoot(t)
	// The outside host first, so that its cleanup runs after the agent's:
	// once its veth is gone, the host would route the pod's calls to it
	// through its default route.
	out := netNewOutside(t)
	seen := netServeOutside(t, out, 7000)
	netCheckRoute(t, out.addr, out.hostVeth)
	a := newRootAgent(t)
	hostPort := netFreePort(t)
	gateway := a.PodCIDR.Addr().Next()
	hpPod := func(name string) string {
		return netHostPortPod(name, a.Image, hostPort, netip.AddrPortFrom(out.addr, 7000), netip.AddrPortFrom(gateway, hostPort))
	}

	a.start()
	a.writeManifest("hp.yaml", hpPod("net-hp"))
	hp := a.waitPod("default/net-hp", "running with an IP", 60*time.Second, netRunningWithIP)
	podIP := netPodIP(t, a, hp)

	// Masquerade: the outside host has no route to the pod CIDR, yet it is
	// reached, and sees the host's address on the test veth.
	var from netip.Addr
	a.eventually("the outside host hears from net-hp", 60*time.Second, func() error {
		var ok bool
		from, ok = seen()
		if !ok {
			return errors.New("no request yet")
		}
		return nil
	})
	if from != out.hostAddr {
		t.Errorf("outside host saw the pod as %s, want %s (masqueraded; pod IP %s)", from, out.hostAddr, podIP)
	}

	// The host port, from the outside host, the host's loopback and the
	// bridge address, and from the pod itself through the bridge address.
	netCheckLocal(t, gateway, a.Bridge)
	const page = "hello from net-hp"
	outsideURL := netip.AddrPortFrom(out.hostAddr, hostPort)
	a.eventually("outside host → "+outsideURL.String(), 30*time.Second, func() error {
		return netExpectBodyFrom(out, outsideURL, page)
	})
	for _, host := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), gateway} {
		url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(host, hostPort))
		a.eventually("host GET "+url, 30*time.Second, func() error { return netExpectBody(url, page) })
	}
	if got := netWaitFile(t, a, a.mainPID(hp, "caller"), "/tmp/hairpin", 30*time.Second); !strings.Contains(got, page) {
		t.Errorf("net-hp → its own host port through %s: %q, want %q", gateway, got, page)
	}

	// A second pod asking for the same host port waits, and says why.
	a.writeManifest("hp2.yaml", hpPod("net-hp2"))
	hp2 := a.waitPod("default/net-hp2", "pending on the host port", 30*time.Second, func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodPending || !strings.Contains(p.Status.Message, "default/net-hp") ||
			!strings.Contains(p.Status.Message, strconv.Itoa(int(hostPort))) {
			return fmt.Errorf("phase %s, reason %q, message %q: want Pending naming default/net-hp and port %d",
				p.Status.Phase, p.Status.Reason, p.Status.Message, hostPort)
		}
		return nil
	})
	t.Logf("net-hp2: %s: %s", hp2.Status.Reason, hp2.Status.Message)
	if err := netExpectBody(fmt.Sprintf("http://127.0.0.1:%d/", hostPort), page); err != nil {
		t.Errorf("net-hp after net-hp2 asked for its port: %v", err)
	}
	a.removeManifest("hp2.yaml")
	a.eventually("net-hp2 gone", 30*time.Second, func() error { return netGone(a, "default/net-hp2") })
	if err := netExpectBody(fmt.Sprintf("http://127.0.0.1:%d/", hostPort), page); err != nil {
		t.Errorf("net-hp after net-hp2 went: %v", err)
	}

	// Teardown: the port stops answering, nothing of the pod is left.
	a.removeManifest("hp.yaml")
	a.eventually("net-hp gone", 30*time.Second, func() error { return netGone(a, "default/net-hp") })
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort), 5*time.Second); err == nil {
		t.Errorf("127.0.0.1:%d still answers after teardown", hostPort)
	}
	if err := netExpectBodyFrom(out, outsideURL, page); err == nil {
		t.Errorf("outside host → %s still answers after teardown", outsideURL)
	}
	netCheckClean(t, a, hostPort)
}

// TestNetManyPodsAgentKill starts 50 pods at once, SIGKILLs the agent once
// about 20 run, and restarts it: all 50 run, on 50 distinct addresses of the
// CIDR, each on its eth0; every pod that had an address before the kill
// keeps it; there is exactly one lease and one veth per pod. Removing the
// pods leaves no veth and no lease.
func TestNetManyPodsAgentKill(t *testing.T) {
	const pods, perFile = 50, 10
	// The restarted agent must serve on the same address: start() finds
	// it in the log, which still holds the first agent's line.
	a := newRootAgent(t, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", netFreePort(t)))
	a.start()
	for f := 0; f < pods/perFile; f++ {
		var docs []string
		for i := f * perFile; i < (f+1)*perFile; i++ {
			docs = append(docs, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: net-many-%02d}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: sleep, image: %q, command: [sleep, "100000"]}
`, i, a.Image))
		}
		a.writeManifest(fmt.Sprintf("many-%d.yaml", f), strings.Join(docs, "---\n"))
	}

	var before map[string]string
	a.eventually("20 pods running", 120*time.Second, func() error {
		var n int
		before, n = netIPs(a.pods())
		if n < 20 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	a.stop(syscall.SIGKILL)
	leased := netLeases(t, a) // may hold more: pods killed mid-setup
	t.Logf("agent killed with %d pods addressed, %d leases", len(before), len(leased))
	a.start()

	var after map[string]string
	a.eventually("all pods running after the restart", 180*time.Second, func() error {
		var n int
		after, n = netIPs(a.pods())
		if n < pods || len(after) < pods {
			return fmt.Errorf("%d of %d running, %d addressed", n, pods, len(after))
		}
		return nil
	})
	owner := map[string]string{}
	for name, ip := range after {
		addr := netip.MustParseAddr(ip)
		if !a.PodCIDR.Contains(addr) || addr == a.PodCIDR.Addr().Next() {
			t.Errorf("%s got %s: not a pod address of %s", name, ip, a.PodCIDR)
		}
		if other, ok := owner[ip]; ok {
			t.Errorf("%s and %s both got %s", name, other, ip)
		}
		owner[ip] = name
		if old, ok := before[name]; ok && old != ip {
			t.Errorf("%s had %s before the agent was killed, %s after", name, old, ip)
		}
	}
	byUID := map[string]string{}
	for _, p := range a.pods() {
		byUID[string(p.UID)] = p.Status.PodIP
		want := netip.PrefixFrom(netip.MustParseAddr(p.Status.PodIP), a.PodCIDR.Bits())
		netCheckEth0(t, a.mainPID(&p, "sleep"), want, a.PodCIDR.Addr().Next())
	}
	// A lease taken before the kill, even by a pod whose setup the kill
	// interrupted, is that pod's address after the restart.
	for ip, uid := range leased {
		if byUID[uid] != ip {
			t.Errorf("lease %s of pod %s before the kill; the pod has %q after", ip, uid, byUID[uid])
		}
	}
	if leases := netLeases(t, a); len(leases) != pods {
		t.Errorf("%d leases for %d pods", len(leases), pods)
	}
	if veths := netBridgePorts(t, a.Bridge); len(veths) != pods {
		t.Errorf("%d veths on the bridge for %d pods", len(veths), pods)
	}

	for f := 0; f < pods/perFile; f++ {
		a.removeManifest(fmt.Sprintf("many-%d.yaml", f))
	}
	a.eventually("all pods gone", 120*time.Second, func() error {
		if n := len(a.pods()); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
	netCheckClean(t, a, 0)
}

// netWebPod serves "hello from net-web" on 8080 from an emptyDir, a page on
// port 80 (container root binds it), and one on 127.0.0.1:9090 only. Its
// DNS comes from dnsConfig alone.
func netWebPod(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: net-web}
spec:
  terminationGracePeriodSeconds: 1
  hostname: web-host
  dnsPolicy: None
  dnsConfig:
    nameservers: [198.51.100.53, 203.0.113.53]
    searches: [pods.example.test, example.test]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  volumes: [{name: www, emptyDir: {}}]
  containers:
  - name: web
    image: %[1]q
    command: [sh, -c, 'echo hello from net-web >/www/index.html && exec httpd -f -p 8080 -h /www']
    volumeMounts: [{name: www, mountPath: /www}]
  - name: web80
    image: %[1]q
    command: [sh, -c, 'mkdir -p /w && echo root binds port 80 >/w/index.html && exec httpd -f -p 80 -h /w']
  - name: local
    image: %[1]q
    command: [sh, -c, 'mkdir -p /w && echo loopback only >/w/index.html && exec httpd -f -p 127.0.0.1:9090 -h /w']
`, image)
}

// netClientPod fetches TARGET:8080 until it answers, then tries TARGET:9090
// once, and leaves the results in /out (an emptyDir).
func netClientPod(image string, target netip.Addr) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: net-client}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: out, emptyDir: {}}]
  containers:
  - name: probe
    image: %q
    env: [{name: TARGET, value: %q}]
    volumeMounts: [{name: out, mountPath: /out}]
    command:
    - sh
    - -c
    - |
      i=0
      until timeout 5 wget -q -O /out/web http://$TARGET:8080/ 2>>/out/log; do
        i=$((i+1)); [ $i -lt 60 ] || break; sleep 0.5
      done
      timeout 5 wget -q -O- http://$TARGET:9090/ >/out/local 2>&1
      echo tries=$i >/out/done
      exec sleep 100000
`, image, target)
}

// netHostPortPod serves its name on 8080, published on hostPort. It asks
// the outside host for a page until it gets one (a minute at most: it must
// not call it once the test's veth is gone and the host would route the
// call elsewhere), then fetches its own host port through the bridge
// address (hairpin) into /tmp/hairpin every second.
func netHostPortPod(name, image string, hostPort uint16, outside, gateway netip.AddrPort) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: %[2]q
    command: [sh, -c, 'mkdir -p /w && echo hello from %[1]s >/w/index.html && exec httpd -f -p 8080 -h /w']
    ports: [{containerPort: 8080, hostPort: %[3]d}]
  - name: caller
    image: %[2]q
    command:
    - sh
    - -c
    - |
      i=0
      until timeout 5 wget -q -O- http://%[4]s/ >/dev/null 2>&1; do
        i=$((i+1)); [ $i -lt 60 ] || break; sleep 1
      done
      while :; do
        timeout 5 wget -q -O /tmp/h http://%[5]s/ 2>/dev/null && mv /tmp/h /tmp/hairpin
        sleep 1
      done
`, name, image, hostPort, outside, gateway)
}

// netRunningWithIP is running() plus an address in the status.
func netRunningWithIP(p *corev1.Pod) error {
	if err := running(p); err != nil {
		return err
	}
	if p.Status.PodIP == "" {
		return errors.New("no status.podIP")
	}
	return nil
}

// netPodIP returns status.podIP, checking it lies in the agent's CIDR and
// matches status.podIPs.
func netPodIP(t *testing.T, a *rootAgent, p *corev1.Pod) netip.Addr {
	t.Helper()
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil || !a.PodCIDR.Contains(ip) || ip == a.PodCIDR.Addr().Next() {
		t.Fatalf("pod %s: status.podIP %q is not a pod address of %s", p.Name, p.Status.PodIP, a.PodCIDR)
	}
	if len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
		t.Errorf("pod %s: status.podIPs %v, want [%s]", p.Name, p.Status.PodIPs, ip)
	}
	return ip
}

// netIPs returns the address of every pod that has one, by name, and how
// many pods have every container running.
func netIPs(pods []corev1.Pod) (map[string]string, int) {
	ips, running := map[string]string{}, 0
	for _, p := range pods {
		if p.Status.PodIP != "" {
			ips[p.Name] = p.Status.PodIP
		}
		if netRunningWithIP(&p) == nil {
			running++
		}
	}
	return ips, running
}

// netCheckEth0 checks, from inside the netns of pid, that eth0 holds
// exactly addr and the default route goes through gateway on eth0.
func netCheckEth0(t *testing.T, pid int, addr netip.Prefix, gateway netip.Addr) {
	t.Helper()
	ns := strconv.Itoa(pid)
	out, err := exec.Command("nsenter", "-t", ns, "-n", "ip", "-o", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Errorf("ip addr in the netns of %d: %v: %s", pid, err, out)
		return
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[2] == "inet" {
			got = append(got, f[3])
		}
	}
	if len(got) != 1 || got[0] != addr.String() {
		t.Errorf("eth0 in the netns of %d has %v, want [%s]", pid, got, addr)
	}
	out, err = exec.Command("nsenter", "-t", ns, "-n", "ip", "-4", "route", "show", "default").CombinedOutput()
	if want := "default via " + gateway.String() + " dev eth0"; err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("default route in the netns of %d: %v: %q, want %q", pid, err, out, want)
	}
}

// netCheckRoute fails the test unless the host routes dst through link:
// the safety check before sending anything to dst.
func netCheckRoute(t *testing.T, dst netip.Addr, link string) {
	t.Helper()
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		t.Fatalf("route to %s: %v", dst, err)
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil || l.Attrs().Name != link {
		t.Fatalf("the host routes %s through %v (%v), not the test link %s: refusing to send", dst, l, err, link)
	}
}

// netCheckLocal fails the test unless addr is an address of link, so that
// traffic to it stays on the host.
func netCheckLocal(t *testing.T, addr netip.Addr, link string) {
	t.Helper()
	l, err := netlink.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.Equal(addr.AsSlice()) {
			return
		}
	}
	t.Fatalf("%s is not an address of %s: refusing to send", addr, link)
}

var netHTTP = &http.Client{Timeout: 5 * time.Second}

// netExpectBody GETs url from the host and wants want in the body.
func netExpectBody(url, want string) error {
	resp, err := netHTTP.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s %q, want %q", url, resp.Status, body, want)
	}
	return nil
}

// netExpectBodyFrom GETs / from dst, connecting from the outside host, and
// wants want in the response.
func netExpectBodyFrom(out *netOutside, dst netip.AddrPort, want string) error {
	var conn net.Conn
	err := out.do(func() (err error) {
		conn, err = net.DialTimeout("tcp", dst.String(), 5*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !strings.Contains(string(resp), want) {
		return fmt.Errorf("GET %s from the outside host: %q, want %q", dst, resp, want)
	}
	return nil
}

// netReadFile reads path in the mount namespace of pid, through its root.
func netReadFile(t *testing.T, pid int, path string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, path))
	if err != nil {
		t.Errorf("read %s of process %d: %v", path, pid, err)
	}
	return string(b)
}

// netWaitFile waits for path to exist in the mount namespace of pid.
func netWaitFile(t *testing.T, a *rootAgent, pid int, path string, timeout time.Duration) string {
	t.Helper()
	var b []byte
	a.eventually(path+" in process "+strconv.Itoa(pid), timeout, func() (err error) {
		b, err = os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, path))
		return err
	})
	return string(b)
}

// netHasLine reports whether text has a line of exactly these fields.
func netHasLine(text string, fields ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func netGone(a *rootAgent, key string) error {
	if p := a.pod(key); p != nil {
		return fmt.Errorf("still listed: %s", p.Status.Phase)
	}
	return nil
}

// netFreePort returns a TCP port nothing listens on now.
func netFreePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// netLeases returns the leases under the agent's --state: address to pod
// UID.
func netLeases(t *testing.T, a *rootAgent) map[string]string {
	t.Helper()
	dir := filepath.Join(a.cfg.State, "ipam", strings.ReplaceAll(a.PodCIDR.String(), "/", "_"))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("lease directory: %v", err)
	}
	leases := map[string]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("read lease: %v", err)
		}
		leases[e.Name()] = strings.TrimSpace(string(b))
	}
	return leases
}

// netBridgePorts returns the links enslaved to the bridge.
func netBridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	return ports
}

// netCheckClean checks that no pod left a veth on the bridge, a lease, or
// (for hostPort > 0) a DNAT rule for the port.
func netCheckClean(t *testing.T, a *rootAgent, hostPort uint16) {
	t.Helper()
	if ports := netBridgePorts(t, a.Bridge); len(ports) > 0 {
		t.Errorf("veths left on %s: %v", a.Bridge, ports)
	}
	if leases := netLeases(t, a); len(leases) > 0 {
		t.Errorf("leases left: %v", leases)
	}
	if records, err := os.ReadDir(filepath.Join(a.cfg.State, "hostports")); err != nil || len(records) > 0 {
		t.Errorf("host port records left: %v %v", records, err)
	}
	if n := netDNATRules(t, a.Bridge); n > 0 {
		t.Errorf("nft table ip %s still has %d DNAT rules (host port %d)", a.Bridge, n, hostPort)
	}
}

// netDNATRules counts the DNAT rules in the agent's nftables table, read
// over netlink (the qemu guest has no nft command).
func netDNATRules(t *testing.T, table string) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("list nftables chains: %v", err)
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatalf("list rules of chain %s: %v", ch.Name, err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if nat, ok := e.(*expr.NAT); ok && nat.Type == expr.NATTypeDestNAT {
					n++
				}
			}
		}
	}
	return n
}

// netOutside is a host outside the pods' world: a network namespace on a
// veth, hostAddr on the host's end and addr on its own, in a TEST-NET /29
// no host route covers. It has no route back to the pod CIDR.
type netOutside struct {
	hostVeth       string
	hostAddr, addr netip.Addr
	ns             netns.NsHandle
}

// netNewOutside makes an outside host through netlink alone (the qemu
// guest of hack/vmtest.sh has no iproute2); its cleanup, registered first,
// closes the namespace, which takes the veth pair with it.
func netNewOutside(t *testing.T) *netOutside {
	t.Helper()
	suffix := randomHex(t, 4)
	out := &netOutside{hostVeth: "ppv" + suffix}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(out.hostVeth); err == nil {
			netlink.LinkDel(l)
		}
		if out.ns.IsOpen() {
			out.ns.Close()
		}
	})
	block := netFreeBlock(t)
	out.hostAddr, out.addr = block.Addr().Next(), block.Addr().Next().Next()
	ns, err := netNewNamespace()
	if err != nil {
		t.Fatal(err)
	}
	out.ns = ns
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: out.hostVeth},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", out.hostVeth, err)
	}
	if err := netLinkUp(nil, out.hostVeth, netip.PrefixFrom(out.hostAddr, block.Bits())); err != nil {
		t.Fatal(err)
	}
	inside, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if err := netLinkUp(inside, "eth0", netip.PrefixFrom(out.addr, block.Bits())); err != nil {
		t.Fatal(err)
	}
	if err := netLinkUp(inside, "lo", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// netNewNamespace returns a new, unnamed network namespace, made on a
// locked thread that switches back (or is discarded with its goroutine).
func netNewNamespace() (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		host, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- result{err: err}
			return
		}
		defer host.Close()
		ns, err := netns.New()
		if err != nil {
			c <- result{err: err}
			return // the thread may be in an unknown namespace: stay locked
		}
		if err := netns.Set(host); err != nil {
			c <- result{ns: ns, err: err}
			return
		}
		runtime.UnlockOSThread()
		c <- result{ns: ns}
	}()
	r := <-c
	return r.ns, r.err
}

// netLinkUp gives the link an address (unless addr is zero) and brings it
// up, through h (nil: the test's own namespace).
func netLinkUp(h *netlink.Handle, name string, addr netip.Prefix) error {
	if h == nil {
		h = &netlink.Handle{}
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if addr.IsValid() {
		a, err := netlink.ParseAddr(addr.String())
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", addr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

// netFreeBlock picks a /29 of 198.51.100.0/24 or 203.0.113.0/24 that no
// host route overlaps (other tests may use these ranges too).
func netFreeBlock(t *testing.T) netip.Prefix {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		base := [][4]byte{{198, 51, 100, 0}, {203, 0, 113, 0}}[rand.IntN(2)]
		base[3] = byte(8 * rand.IntN(32))
		p := netip.PrefixFrom(netip.AddrFrom4(base), 29)
		if !overlapsRoute(p, routes) {
			return p
		}
	}
	t.Fatal("no free /29 in 198.51.100.0/24 or 203.0.113.0/24 for the outside host")
	return netip.Prefix{}
}

// do runs f on a locked OS thread inside the outside host's namespace.
// Sockets made by f stay in that namespace. If switching back fails, the
// thread stays locked and Go discards it with its goroutine.
func (o *netOutside) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer host.Close()
		if err := netns.Set(o.ns); err != nil {
			errc <- err // the thread may be anywhere: stay locked
			return
		}
		ferr := f()
		if err := netns.Set(host); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("back to the host netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netServeOutside serves HTTP on port of the outside host until the test
// ends; seen returns the source address of the latest request.
func netServeOutside(t *testing.T, out *netOutside, port uint16) (seen func() (netip.Addr, bool)) {
	t.Helper()
	var l net.Listener
	err := out.do(func() (err error) {
		l, err = net.Listen("tcp4", netip.AddrPortFrom(out.addr, port).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on the outside host: %v", err)
	}
	var (
		mu   sync.Mutex
		from netip.Addr
	)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			mu.Lock()
			from = ap.Addr()
			mu.Unlock()
		}
		io.WriteString(w, "outside\n")
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return func() (netip.Addr, bool) {
		mu.Lock()
		defer mu.Unlock()
		return from, from.IsValid()
	}
}
