package netsetup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
)

// What a repair fixed: the values of the what label of
// peapod_network_repairs_total.
const (
	kindBridge  = "bridge"
	kindAddress = "address"
	kindTable   = "table"
	kindRule    = "rule"
	kindSysctl  = "sysctl"
	kindVeth    = "veth"
)

// RepairKinds are the kinds of repair Repair reports, for metrics that
// want every label value from the start.
var RepairKinds = []string{kindBridge, kindAddress, kindTable, kindRule, kindSysctl, kindVeth}

// PodNetNS names a running pod whose network Repair keeps.
type PodNetNS struct {
	UID types.UID
	// NetNSPath is the pinned network namespace of the pod.
	NetNSPath string
}

// RepairResult is what one Repair round did.
type RepairResult struct {
	// Repairs counts the repairs made, by kind (RepairKinds).
	Repairs map[string]int
	// Unavailable holds the pods whose network is broken and could not be
	// repaired, with why.
	Unavailable map[types.UID]error
}

// Repair checks what Ensure and Setup made and repairs what someone else
// changed: the bridge, its address, the forwarding sysctls, the nftables
// table (every chain and rule), and the veth of every pod in pods that
// holds a lease. With deep set it also checks each pod's eth0, its address
// and its default route, which takes a netlink round trip per pod; without
// it, only the pods whose host-side veth is missing or detached are
// looked into. Every repair is logged.
//
// Setup, Teardown and another Repair must not run meanwhile: a pod half
// set up would look broken. The pods that a round found broken are looked
// into again by the next one, deep or not. The error is for what could not
// be checked or repaired on the host side; pods are reported in the result.
func (m *Manager) Repair(ctx context.Context, pods []PodNetNS, deep bool) (RepairResult, error) {
	res := RepairResult{Repairs: map[string]int{}, Unavailable: map[types.UID]error{}}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	note := func(what, detail string, args ...any) {
		res.Repairs[what]++
		m.log.Warn("network repaired", append([]any{"what", what, "detail", detail}, args...)...)
	}
	br, err := m.repairBridge(note)
	if err != nil {
		// Without a bridge no pod has a network.
		for _, p := range pods {
			res.Unavailable[p.UID] = err
		}
		m.broken = res.Unavailable
		return res, err
	}
	// The table first: route_localnet without the localnet guard is the
	// hole of CVE-2020-8558.
	var errs []error
	what, detail, err := m.fw.repair(m.ports.all)
	if err != nil {
		errs = append(errs, err)
	} else if what != "" {
		note(what, detail, "table", m.bridge)
	}
	for _, s := range m.hostSysctls() {
		changed, err := s.ensure()
		if err != nil {
			errs = append(errs, fmt.Errorf("set sysctl %s: %w", s.path, err))
		} else if changed {
			note(kindSysctl, "sysctl reset", "sysctl", s.path, "value", s.value)
		}
	}
	if err := m.repairPods(ctx, br, pods, deep, note, res.Unavailable); err != nil {
		errs = append(errs, err)
	}
	m.broken = res.Unavailable
	return res, errors.Join(errs...)
}

// repairBridge recreates the bridge if it is gone, sets it up if it is
// down, and gives it back its address.
func (m *Manager) repairBridge(note func(what, detail string, args ...any)) (netlink.Link, error) {
	br, err := netlink.LinkByName(m.bridge)
	switch {
	case isNotFound(err):
		if br, err = ensureBridge(m.bridge, m.mtu, m.gateway); err != nil {
			return nil, err
		}
		note(kindBridge, "bridge recreated", "bridge", m.bridge)
		return br, nil
	case err != nil:
		return nil, fmt.Errorf("find bridge %s: %w", m.bridge, err)
	}
	// Its MTU is not checked: the kernel itself changes the MTU of a
	// bridge as ports come and go.
	if br.Attrs().Flags&net.FlagUp == 0 {
		if br, err = ensureBridge(m.bridge, m.mtu, m.gateway); err != nil {
			return nil, err
		}
		note(kindBridge, "bridge set up", "bridge", m.bridge)
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of bridge %s: %w", m.bridge, err)
	}
	if !hasAddr(addrs, m.gateway) {
		if err := netlink.AddrReplace(br, &netlink.Addr{IPNet: ipNet(m.gateway)}); err != nil {
			return nil, fmt.Errorf("add address %s to bridge %s: %w", m.gateway, m.bridge, err)
		}
		note(kindAddress, "gateway address restored", "bridge", m.bridge, "address", m.gateway)
	}
	return br, nil
}

func hasAddr(addrs []netlink.Addr, want netip.Prefix) bool {
	return slices.ContainsFunc(addrs, func(a netlink.Addr) bool {
		addr, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		return ok && netip.PrefixFrom(addr.Unmap(), ones) == want
	})
}

// vethState is what a round sees of a pod's host-side veth.
type vethState int

const (
	vethOK       vethState = iota
	vethMissing            // gone, and the pod's eth0 with it
	vethDetached           // not on the bridge, or down
)

// hostVethState says in what state the host-side veth named name is, from
// a list of the host's links.
func hostVethState(links map[string]netlink.Link, name string, bridgeIndex int) vethState {
	l, ok := links[name]
	if _, isVeth := l.(*netlink.Veth); !ok || !isVeth {
		return vethMissing
	}
	if l.Attrs().MasterIndex != bridgeIndex || l.Attrs().Flags&net.FlagUp == 0 {
		return vethDetached
	}
	return vethOK
}

func (m *Manager) repairPods(ctx context.Context, br netlink.Link, pods []PodNetNS, deep bool,
	note func(what, detail string, args ...any), unavailable map[types.UID]error) error {
	leases, err := m.ipam.leases()
	if err != nil {
		return err
	}
	addrOf := make(map[types.UID]netip.Addr, len(leases))
	for addr, uid := range leases {
		addrOf[uid] = addr
	}
	list, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	links := make(map[string]netlink.Link, len(list))
	for _, l := range list {
		links[l.Attrs().Name] = l
	}
	for _, p := range pods {
		addr, ok := addrOf[p.UID]
		if !ok || p.NetNSPath == "" {
			// No lease: Setup has not run, or Teardown has.
			continue
		}
		state := hostVethState(links, vethName(p.UID), br.Attrs().Index)
		if state == vethOK && !deep && m.broken[p.UID] == nil {
			continue
		}
		if !isNetNS(p.NetNSPath) {
			// The runtime is removing the pod (Teardown follows), or
			// has lost its sandbox, which is its to report.
			continue
		}
		what, detail, err := m.repairPod(ctx, p, br, netip.PrefixFrom(addr, m.cidr.Bits()), state)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// The runtime removed the pod's netns meanwhile.
		case err != nil:
			unavailable[p.UID] = err
			if m.broken[p.UID] == nil {
				m.log.Error("pod network broken and not repaired", "uid", p.UID, "ip", addr, "err", err)
			}
		case what != "":
			note(what, detail, "uid", p.UID, "iface", vethName(p.UID), "ip", addr)
		}
	}
	return nil
}

// isNetNS reports whether path is a pinned network namespace (or any
// namespace: the runtime pins nothing else there). An unpinned path is a
// plain file.
func isNetNS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// repairPod repairs one pod's veth, eth0, address and route. The pod keeps
// its address (its lease) and, since eth0's MAC derives from the UID, its
// MAC: no neighbour cache holds a stale entry for it.
func (m *Manager) repairPod(ctx context.Context, p PodNetNS, br netlink.Link, addr netip.Prefix, state vethState) (what, detail string, err error) {
	switch state {
	case vethMissing:
		if err := m.connect(ctx, p.UID, p.NetNSPath, addr, nil); err != nil {
			return "", "", fmt.Errorf("recreate veth: %w", err)
		}
		return kindVeth, "veth recreated", nil
	case vethDetached:
		host, err := netlink.LinkByName(vethName(p.UID))
		if err != nil {
			return "", "", fmt.Errorf("find veth: %w", err)
		}
		if err := attach(vethSpec{hostName: vethName(p.UID), bridge: br}, host); err != nil {
			return "", "", err
		}
		if err := waitForwarding(ctx, vethName(p.UID)); err != nil {
			return "", "", err
		}
		return kindVeth, "veth attached to the bridge", nil
	}
	ok, err := podSideOK(p.NetNSPath, addr, m.gateway.Addr())
	if err != nil || ok {
		return "", "", err
	}
	if err := m.connect(ctx, p.UID, p.NetNSPath, addr, nil); err != nil {
		return "", "", fmt.Errorf("restore eth0 in pod netns: %w", err)
	}
	return kindAddress, "pod address or route restored", nil
}

// podSideOK reports whether the pod's eth0 is up with its address and its
// default route through the gateway. A missing netns is fs.ErrNotExist.
func podSideOK(nsPath string, addr netip.Prefix, gateway netip.Addr) (bool, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return false, fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false, fmt.Errorf("open netlink in netns %s: %w", nsPath, err)
	}
	defer h.Close()
	eth, err := h.LinkByName(podIface)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find %s in pod netns: %w", podIface, err)
	}
	if eth.Attrs().Flags&net.FlagUp == 0 {
		return false, nil
	}
	addrs, err := h.AddrList(eth, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list addresses in pod netns: %w", err)
	}
	if !hasAddr(addrs, addr) {
		return false, nil
	}
	routes, err := h.RouteList(eth, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list routes in pod netns: %w", err)
	}
	return slices.ContainsFunc(routes, func(r netlink.Route) bool {
		gw, _ := netip.AddrFromSlice(r.Gw)
		return isDefault(r) && gw.Unmap() == gateway
	}), nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}
