package netsetup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// DefaultBridge is the bridge used when Options.Bridge is empty.
	DefaultBridge = "peapod0"
	// DefaultPodCIDR is the pod CIDR used when Options.PodCIDRs is empty.
	// It collides with neither podman's 10.88.0.0/16 nor docker's
	// 172.17.0.0/16.
	DefaultPodCIDR = "10.85.0.0/16"
)

// podSysctls are set in every pod netns, unless the pod sets them itself
// (podDefaults). The pod's containers run in a user namespace that does not
// own the netns, so they cannot set them themselves.
var podSysctls = []sysctl{
	// Container root may bind ports below 1024, as it could in Docker.
	{path: "net/ipv4/ip_unprivileged_port_start", value: "0"},
	// ICMP echo sockets (ping without CAP_NET_RAW) for every group. The
	// range is read in the user namespace of the writer, the agent's, so
	// it must cover the host GIDs that pods' IDs map to: all of them.
	{path: "net/ipv4/ping_group_range", value: "0 2147483647"},
}

// Options configure a Manager. The zero value of each field has a default.
type Options struct {
	// Bridge is the name of the bridge, and of the nftables table;
	// DefaultBridge if empty.
	Bridge string
	// PodCIDRs are the pod address ranges; DefaultPodCIDR if empty. Only
	// one IPv4 range is supported.
	PodCIDRs []netip.Prefix
	// MTU of the bridge and the veths; 0 means the MTU of the interface of
	// the host's default route, or 1500 if there is none.
	MTU int
	// StateDir holds the leases (StateDir/ipam) and the host ports of the
	// pods (StateDir/hostports). Required; meant to be on a tmpfs.
	StateDir string
	// Log receives the manager's logs; nil discards them.
	Log *slog.Logger
}

// Manager sets up the network of pods on one bridge. It implements
// reconcile.Network. Its methods are safe for concurrent use, except that
// two calls for the same pod UID must not overlap.
type Manager struct {
	bridge  string
	cidr    netip.Prefix
	gateway netip.Prefix // the bridge's address: the first of the CIDR
	mtu     int
	log     *slog.Logger

	ipam  *allocator
	ports *portTable
	fw    *firewall

	// broken holds the pods that the last Repair could not repair; only
	// Repair, which its callers serialize, uses it.
	broken map[types.UID]error
}

// New returns a Manager. It reads the state left by an earlier process but
// changes nothing on the host: call Ensure before Setup.
func New(opts Options) (*Manager, error) {
	cidr, err := podCIDR(opts.PodCIDRs)
	if err != nil {
		return nil, err
	}
	if opts.StateDir == "" {
		return nil, errors.New("netsetup: StateDir is required")
	}
	m := &Manager{
		bridge:  cmp.Or(opts.Bridge, DefaultBridge),
		cidr:    cidr,
		gateway: netip.PrefixFrom(cidr.Addr().Next(), cidr.Bits()),
		mtu:     opts.MTU,
		log:     cmp.Or(opts.Log, slog.New(slog.DiscardHandler)),
	}
	if len(m.bridge) >= 16 || strings.ContainsAny(m.bridge, "/: \t\n") || m.bridge == "." || m.bridge == ".." {
		return nil, fmt.Errorf("netsetup: invalid bridge name %q", m.bridge)
	}
	if m.mtu == 0 {
		if m.mtu, err = defaultRouteMTU(); err != nil {
			return nil, err
		}
	}
	if err := m.loadState(opts.StateDir); err != nil {
		return nil, err
	}
	m.fw = newFirewall(m.bridge, m.bridge, cidr)
	return m, nil
}

func podCIDR(cidrs []netip.Prefix) (netip.Prefix, error) {
	switch {
	case len(cidrs) == 0:
		return netip.MustParsePrefix(DefaultPodCIDR), nil
	case len(cidrs) > 1:
		return netip.Prefix{}, fmt.Errorf("netsetup: %d pod CIDRs given, only one IPv4 CIDR is supported", len(cidrs))
	case !cidrs[0].IsValid() || !cidrs[0].Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("netsetup: pod CIDR %s is not an IPv4 CIDR", cidrs[0])
	}
	return cidrs[0].Masked(), nil
}

// loadState opens the leases and the host port records. A record whose pod
// holds no lease is a leftover of a crash in Teardown: it is dropped.
func (m *Manager) loadState(dir string) error {
	store, err := newDiskStore(filepath.Join(dir, "ipam", strings.ReplaceAll(m.cidr.String(), "/", "_")))
	if err != nil {
		return err
	}
	if m.ipam, err = newAllocator(m.cidr, store); err != nil {
		return err
	}
	if m.ports, err = loadPortTable(filepath.Join(dir, "hostports")); err != nil {
		return err
	}
	leases, err := m.ipam.leases()
	if err != nil {
		return err
	}
	for _, p := range m.ports.all() {
		if leases[p.IP] != p.UID {
			if err := m.ports.release(p.UID); err != nil {
				return fmt.Errorf("drop host ports of pod %s: %w", p.Pod, err)
			}
		}
	}
	return nil
}

// Ensure makes the host ready for pods: the bridge with the gateway address,
// IP forwarding, and the nftables table rewritten to exactly the rules of
// the known pods. It adopts an existing bridge. It is idempotent and meant
// to be called at start; Keep then repairs what someone else changes.
func (m *Manager) Ensure(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRoutes(m.cidr, m.bridge); err != nil {
		return err
	}
	if _, err := ensureBridge(m.bridge, m.mtu, m.gateway); err != nil {
		return err
	}
	for _, s := range m.hostSysctls() {
		changed, err := s.ensure()
		if err != nil {
			return fmt.Errorf("set sysctl %s: %w", s.path, err)
		}
		if changed {
			m.log.Info("sysctl set", "sysctl", s.path, "value", s.value)
		}
	}
	return m.fw.rewrite(m.ports.all)
}

// hostSysctls are the host's settings that pods need.
func (m *Manager) hostSysctls() []sysctl {
	return []sysctl{
		// For the whole host: the per-interface switch applies to the
		// interface a packet comes in through, and the answers to the
		// pods' connections and host port clients come in through any of
		// them. The table's forward filter keeps other hosts from the
		// pods' ports.
		{path: "net/ipv4/ip_forward", value: "1"},
		// 127.0.0.1:hostPort: the host's own connection to a loopback
		// address is DNATed to a pod and must be allowed to leave through
		// the bridge. The localnet-guard chain drops what pods send to
		// 127.0.0.0/8 through the bridge, which this would let in too
		// (CVE-2020-8558).
		{path: filepath.Join("net/ipv4/conf", m.bridge, "route_localnet"), value: "1"},
	}
}

// Setup connects the pod's network namespace, pinned at netnsPath, and
// returns its address. It is idempotent: a second call, or a retry after a
// failure or a crash, finishes the job and returns the same address. On
// failure it releases what it acquired.
func (m *Manager) Setup(ctx context.Context, pod *corev1.Pod, netnsPath string) (_ []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkUID(pod.UID); err != nil {
		return nil, err
	}
	start := time.Now()
	key := podKey(pod)
	ports, err := hostPortsOf(pod)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}
	addr, err := m.ipam.allocate(pod.UID)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			m.rollback(pod, err)
		}
	}()
	if err := m.publishPorts(podPorts{UID: pod.UID, Pod: key, IP: addr, Ports: ports}); err != nil {
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}
	if err := m.connect(ctx, pod.UID, netnsPath, netip.PrefixFrom(addr, m.cidr.Bits()), podDefaults(pod)); err != nil {
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}
	m.log.Info("pod network set up", "pod", key, "ip", addr, "iface", vethName(pod.UID), "netns", netnsPath,
		"duration", time.Since(start))
	return []string{addr.String()}, nil
}

// rollback undoes a failed Setup, so a pod that is never retried leaks
// nothing.
func (m *Manager) rollback(pod *corev1.Pod, cause error) {
	if err := m.teardown(pod.UID); err != nil {
		m.log.Error("roll back failed network setup", "pod", podKey(pod), "cause", cause, "err", err)
	}
}

// publishPorts records the pod's host ports, refusing ports held by another
// pod, and installs their rules.
func (m *Manager) publishPorts(p podPorts) error {
	if len(p.Ports) == 0 {
		return m.unpublishPorts(p.UID)
	}
	if err := m.ports.claim(p); err != nil {
		return err
	}
	if err := m.fw.setPod(p); err != nil {
		return err
	}
	return forgetUDPFlows(p.Ports)
}

// unpublishPorts removes the pod's host port rules, then its record. Rules
// are only added once the record is written, so a pod without a record has
// no rules and costs no nftables round trip.
func (m *Manager) unpublishPorts(uid types.UID) error {
	if _, ok := m.ports.get(uid); !ok {
		return nil
	}
	if err := m.fw.deletePod(uid); err != nil {
		return err
	}
	if err := m.ports.release(uid); err != nil {
		return fmt.Errorf("forget host ports: %w", err)
	}
	return nil
}

// connect wires the pod netns to the bridge and configures it.
func (m *Manager) connect(ctx context.Context, uid types.UID, netnsPath string, addr netip.Prefix, sysctls []sysctl) error {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in netns %s: %w", netnsPath, err)
	}
	defer h.Close()
	br, err := netlink.LinkByName(m.bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s (was Ensure called?): %w", m.bridge, err)
	}
	if err := ensureVeth(vethSpec{hostName: vethName(uid), bridge: br, mtu: m.mtu, ns: ns, pod: h}); err != nil {
		return err
	}
	if err := configurePod(h, addr, m.gateway.Addr()); err != nil {
		return err
	}
	err = inNetNS(ns, func() error {
		for _, s := range sysctls {
			if _, err := s.ensure(); err != nil {
				return fmt.Errorf("set sysctl %s in pod netns: %w", s.path, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return waitForwarding(ctx, vethName(uid))
}

// Teardown releases what Setup acquired for the pod: its host port rules,
// its veth if it still exists, and its lease. It is idempotent, and keeps
// going past a failure.
func (m *Manager) Teardown(ctx context.Context, pod *corev1.Pod) error {
	if err := checkUID(pod.UID); err != nil {
		return err
	}
	if err := m.teardown(pod.UID); err != nil {
		return fmt.Errorf("pod %s: %w", podKey(pod), err)
	}
	m.log.Info("pod network torn down", "pod", podKey(pod))
	return nil
}

// teardown removes the pod's rules first, so no new connection reaches the
// address, then its veth, and releases the lease last: the address must not
// go to another pod while this one's eth0 may still answer for it, so the
// lease stays if the veth could not be deleted (a retry, or GC, finishes).
// Deleting the veth is the slow part (the kernel waits for an RCU grace
// period); when the runtime has already deleted the pod netns, the veth is
// gone and this costs a lookup.
func (m *Manager) teardown(uid types.UID) error {
	var errs []error
	if err := m.unpublishPorts(uid); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(vethName(uid)); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := m.ipam.release(uid); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// GC removes what belongs to pods not in live: their veths on the bridge,
// their leases, their host port records and rules. live must hold every pod
// whose Setup may be running, or GC will undo it.
func (m *Manager) GC(ctx context.Context, live map[types.UID]bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var errs []error
	if err := m.gcVeths(live); err != nil {
		errs = append(errs, err)
	}
	released, err := m.ipam.releaseIf(func(uid types.UID) bool { return !live[uid] })
	if err != nil {
		errs = append(errs, err)
	}
	for addr, uid := range released {
		m.log.Info("stale lease released", "uid", uid, "ip", addr)
	}
	for _, p := range m.ports.all() {
		if live[p.UID] {
			continue
		}
		if err := m.ports.release(p.UID); err != nil {
			errs = append(errs, err)
		}
		m.log.Info("stale host ports removed", "pod", p.Pod, "uid", p.UID)
	}
	// A rewrite also drops rules whose record a crash lost.
	if err := m.fw.rewrite(m.ports.all); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (m *Manager) gcVeths(live map[types.UID]bool) error {
	br, err := netlink.LinkByName(m.bridge)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", m.bridge, err)
	}
	ports, err := bridgePorts(br)
	if err != nil {
		return err
	}
	keep := make(map[string]bool, len(live))
	for uid := range live {
		keep[vethName(uid)] = true
	}
	var errs []error
	for _, name := range ports {
		if keep[name] {
			continue
		}
		if err := deleteLink(name); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("stale veth deleted", "iface", name)
	}
	return errors.Join(errs...)
}

// Remove deletes the bridge and the nftables table, for tests and uninstall.
// Leases and records stay: Remove does not know whether pods still run.
func (m *Manager) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var errs []error
	if err := m.fw.remove(); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(m.bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkUID refuses UIDs that could not name a file: the UID keys the lease
// and host port files.
func checkUID(uid types.UID) error {
	if uid == "" || strings.ContainsAny(string(uid), "/\x00") || uid == "." || uid == ".." {
		return fmt.Errorf("netsetup: invalid pod UID %q", uid)
	}
	return nil
}

func podKey(pod *corev1.Pod) string {
	return pod.Namespace + "/" + pod.Name
}
