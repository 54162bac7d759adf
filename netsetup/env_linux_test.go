package netsetup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Helpers of the root tests. Every test makes its own bridge, CIDR, nftables
// table and network namespaces, with random names, and registers their
// removal before creating them. Traffic goes only to addresses inside
// namespaces the test made, to the test's bridge, or to loopback; each
// destination's route is checked first.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): creates bridges, veths, network namespaces and nftables tables")
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomInt(t testing.TB, lo, hi int) int {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo+1)))
	if err != nil {
		t.Fatal(err)
	}
	return lo + int(n.Int64())
}

// freePrefix returns a random prefix of the given format that no host route
// overlaps.
func freePrefix(t testing.TB, format string, bits int, octets func() []any) netip.Prefix {
	t.Helper()
	for range 20 {
		p := netip.MustParsePrefix(fmt.Sprintf(format, octets()...) + fmt.Sprintf("/%d", bits)).Masked()
		if checkRoutes(p, "") == nil {
			return p
		}
	}
	t.Fatalf("no free prefix like %s", format)
	return netip.Prefix{}
}

// testPodCIDR is a random 10.x /24 that the host does not route.
func testPodCIDR(t testing.TB) netip.Prefix {
	return freePrefix(t, "10.%d.%d.0", 24, func() []any { return []any{randomInt(t, 160, 250), randomInt(t, 0, 255)} })
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testEnv struct {
	t      testing.TB
	m      *Manager
	bridge string
	cidr   netip.Prefix
	state  string
	log    *slog.Logger
}

// newTestEnv returns a Manager on a new bridge and a random pod CIDR,
// already Ensured, removed at the end of the test.
func newTestEnv(t testing.TB) *testEnv {
	requireRoot(t)
	return newTestEnvCIDR(t, testPodCIDR(t))
}

func newTestEnvCIDR(t testing.TB, cidr netip.Prefix) *testEnv {
	e := &testEnv{
		t:      t,
		bridge: "pptb" + randomHex(t, 4),
		cidr:   cidr,
		state:  t.TempDir(),
		log:    testLogger(t),
	}
	e.m = e.newManager()
	t.Cleanup(func() {
		if err := e.m.Remove(context.Background()); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	if err := e.m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// newManager returns another Manager on the same bridge and state, as a
// restarted agent would make.
func (e *testEnv) newManager() *Manager {
	m, err := New(Options{Bridge: e.bridge, PodCIDRs: []netip.Prefix{e.cidr}, StateDir: e.state, Log: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *testEnv) gateway() netip.Addr { return e.m.gateway.Addr() }

func testPod(t testing.TB, name string, ports ...corev1.ContainerPort) *corev1.Pod {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}}}
	pod.Name, pod.Namespace, pod.UID = name, "default", types.UID(randomHex(t, 16))
	return pod
}

// newNetNS creates a network namespace pinned by a bind mount in a temp
// dir, unpinned at cleanup: with no process in it, the kernel then destroys
// it with its links.
func newNetNS(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "net")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unpin netns %s: %v", path, err)
		}
	})
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with the goroutine, and
		// its new netns stays pinned by the mount only.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("pin netns: %v", err)
	}
	return path
}

// inNS runs fn in the netns at path; "" is the host's.
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return inNetNS(ns, fn)
}

// serve starts a TCP server in the netns at path: it answers every
// connection with the address the connection came from. It stops at
// cleanup.
func serve(t testing.TB, nsPath, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := inNS(nsPath, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
			c.Close()
		}
	})
	return ln
}

// serveUDP starts a UDP server in the netns at path: it answers every
// datagram with the address it came from. It stops at cleanup.
func serveUDP(t testing.TB, nsPath, addr string) {
	t.Helper()
	var pc net.PacketConn
	err := inNS(nsPath, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on udp %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.(*net.UDPAddr).IP.String()), from)
		}
	})
}

// fetchUDP sends a datagram from the netns at nsPath to addr and returns
// the answer.
func fetchUDP(nsPath, addr string) (string, error) {
	var out string
	err := inNS(nsPath, func() error {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("?")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		out = string(buf[:n])
		return err
	})
	return out, err
}

// fetch connects from the netns at nsPath ("" for the host) to addr and
// returns what the server said: the client address it saw.
func fetch(nsPath, addr string) (string, error) {
	var out string
	err := inNS(nsPath, func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	})
	return out, err
}

// requireRouteVia fails the test unless, seen from the netns at nsPath,
// dst is routed through the link named via ("lo" for local addresses).
func requireRouteVia(t testing.TB, nsPath string, dst netip.Addr, via string) {
	t.Helper()
	err := inNS(nsPath, func() error {
		routes, err := netlink.RouteGet(dst.AsSlice())
		if err != nil {
			return err
		}
		link, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return err
		}
		if link.Attrs().Name != via {
			return fmt.Errorf("route to %s goes through %s, not %s: refusing to send", dst, link.Attrs().Name, via)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// outsideHost is a network namespace standing for another machine: it is
// linked to the host by its own veth, with addresses from a random /30 of
// 203.0.113.0/24 (TEST-NET-3), and has no route to the pod CIDR.
type outsideHost struct {
	ns       string
	link     string     // host end
	hostAddr netip.Addr // the host's address on the link
	addr     netip.Addr // the outside host's address
}

func newOutsideHost(t testing.TB) *outsideHost {
	t.Helper()
	p := freePrefix(t, "203.0.113.%d", 30, func() []any { return []any{4 * randomInt(t, 0, 63)} })
	o := &outsideHost{
		ns:       newNetNS(t),
		link:     "ppto" + randomHex(t, 4),
		hostAddr: p.Addr().Next(),
		addr:     p.Addr().Next().Next(),
	}
	t.Cleanup(func() {
		if err := deleteLink(o.link); err != nil {
			t.Errorf("delete %s: %v", o.link, err)
		}
	})
	ns, err := netns.GetFromPath(o.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: o.link, Flags: net.FlagUp}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(veth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(o.hostAddr, 30))}); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := configureOutside(h, netip.PrefixFrom(o.addr, 30)); err != nil {
		t.Fatal(err)
	}
	return o
}

func configureOutside(h *netlink.Handle, addr netip.Prefix) error {
	for _, name := range []string{"lo", "eth0"} {
		link, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if name == "eth0" {
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return err
		}
	}
	return nil
}

// hostVethExists reports whether the host end of the pod's veth exists.
func hostVethExists(t testing.TB, uid types.UID) bool {
	_, err := netlink.LinkByName(vethName(uid))
	if err != nil && !isNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func readSysctlIn(t testing.TB, nsPath, path string) string {
	var v []byte
	err := inNS(nsPath, func() (err error) {
		v, err = os.ReadFile(filepath.Join("/proc/sys", path))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}
