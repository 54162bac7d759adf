package netsetup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// vethPrefix starts the host-side name of every pod veth; GC only
	// touches bridge ports named so.
	vethPrefix = "pp"
	// podIface is the name of the pod's end of its veth.
	podIface = "eth0"
	// dumpAttempts bounds the retries of a netlink dump that the kernel
	// interrupted because the table changed under it.
	dumpAttempts = 5
)

// vethName is the host-side name of a pod's veth: "pp" and 12 hex digits
// of a hash of the UID (14 characters; IFNAMSIZ allows 15). It is derived
// from the UID alone so that Teardown and GC find it without any state.
func vethName(uid types.UID) string {
	sum := sha256.Sum256([]byte(uid))
	return vethPrefix + hex.EncodeToString(sum[:6])
}

// retryDump runs a netlink dump again while the kernel reports that it was
// interrupted (the table changed during the dump, so the result may be
// inconsistent).
func retryDump[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// ensureBridge creates the bridge if it is missing, or adopts the existing
// one, and gives it its MTU, the gateway address and the up state.
func ensureBridge(name string, mtu int, gateway netip.Prefix) (netlink.Link, error) {
	br, err := netlink.LinkByName(name)
	if isNotFound(err) {
		br, err = createBridge(name, mtu)
	}
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", name, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("link %s is a %s, not a bridge: choose another bridge name", name, br.Type())
	}
	if br.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(br, mtu); err != nil {
			return nil, fmt.Errorf("set MTU of bridge %s to %d: %w", name, mtu, err)
		}
	}
	if err := netlink.AddrReplace(br, &netlink.Addr{IPNet: ipNet(gateway)}); err != nil {
		return nil, fmt.Errorf("add address %s to bridge %s: %w", gateway, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", name, err)
	}
	return br, nil
}

// createBridge creates the bridge and reads it back; a bridge created
// concurrently by someone else is adopted.
//
// The MAC address is set explicitly: a bridge without one takes the lowest
// MAC of its ports and changes it whenever ports come and go, leaving every
// pod with a stale ARP entry for its gateway. An address given at creation
// is marked as set by the user, and the kernel keeps it.
func createBridge(name string, mtu int) (netlink.Link, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
		Name:         name,
		MTU:          mtu,
		HardwareAddr: bridgeMAC(name),
	}}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create bridge %s: %w", name, err)
	}
	return netlink.LinkByName(name)
}

// bridgeMAC derives a stable, locally administered unicast MAC from the
// bridge name, so the gateway keeps its MAC across agent restarts too.
func bridgeMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("peapod bridge " + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// podMAC derives the MAC of a pod's eth0 from its host-side veth name,
// itself derived from the pod UID: a veth recreated by Repair gives the pod
// its old MAC back, and the neighbour caches of the host and the other
// pods stay right.
func podMAC(hostName string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("peapod pod " + hostName))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// checkRoutes refuses a pod CIDR that overlaps a route of the host's main
// table through another interface than the bridge: the pods would shadow,
// or be shadowed by, a network the host already reaches.
func checkRoutes(cidr netip.Prefix, bridge string) error {
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	brIndex := -1
	if br, err := netlink.LinkByName(bridge); err == nil {
		brIndex = br.Attrs().Index
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == brIndex {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		addr, _ := netip.AddrFromSlice(r.Dst.IP)
		dst := netip.PrefixFrom(addr.Unmap(), ones)
		if dst.Bits() > 0 && dst.Overlaps(cidr) {
			return fmt.Errorf("pod CIDR %s overlaps the host route to %s: choose another pod CIDR", cidr, dst)
		}
	}
	return nil
}

// defaultRouteMTU returns the MTU of the interface of the host's IPv4
// default route, or 1500 if there is none.
func defaultRouteMTU() (int, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("find interface of the default route: %w", err)
		}
		return link.Attrs().MTU, nil
	}
	return 1500, nil
}

// vethSpec describes the veth of one pod.
type vethSpec struct {
	hostName string
	bridge   netlink.Link
	mtu      int
	ns       netns.NsHandle // the pod's network namespace
	pod      *netlink.Handle
}

// ensureVeth makes sure the pod has its veth: host end on the bridge, pod
// end named eth0 in the pod netns. The common case, a new pod, costs one
// creation; on EEXIST the pair left by an earlier attempt is repaired.
func ensureVeth(s vethSpec) error {
	err := createVeth(s)
	if errors.Is(err, unix.EEXIST) {
		return repairVeth(s)
	}
	return err
}

// repairVeth keeps a complete pair from an earlier attempt, and removes a
// half-made one (one end only, or ends that are not peers) to make it
// again.
func repairVeth(s vethSpec) error {
	host, herr := netlink.LinkByName(s.hostName)
	peer, perr := s.pod.LinkByName(podIface)
	if herr == nil && perr == nil && arePeers(host, peer) {
		return attach(s, host)
	}
	if herr == nil {
		if err := netlink.LinkDel(host); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete leftover veth %s: %w", s.hostName, err)
		}
	}
	if perr == nil {
		if err := s.pod.LinkDel(peer); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete leftover %s in pod netns: %w", podIface, err)
		}
	}
	return createVeth(s)
}

func arePeers(host, peer netlink.Link) bool {
	_, hostIsVeth := host.(*netlink.Veth)
	_, peerIsVeth := peer.(*netlink.Veth)
	return hostIsVeth && peerIsVeth &&
		host.Attrs().ParentIndex == peer.Attrs().Index && peer.Attrs().ParentIndex == host.Attrs().Index
}

// createVeth creates the pair with the peer directly in the pod netns: it is
// an order of magnitude cheaper than creating it in the host netns and
// moving it (1.5 ms against 17 ms here).
func createVeth(s vethSpec) error {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:        s.hostName,
			MTU:         s.mtu,
			MasterIndex: s.bridge.Attrs().Index,
			Flags:       net.FlagUp,
		},
		PeerName:         podIface,
		PeerHardwareAddr: podMAC(s.hostName),
		PeerNamespace:    netlink.NsFd(int(s.ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", s.hostName, err)
	}
	return setHairpin(veth)
}

// attach puts an existing host end back in shape: on the bridge, hairpin,
// up.
func attach(s vethSpec, host netlink.Link) error {
	if host.Attrs().MasterIndex != s.bridge.Attrs().Index {
		if err := netlink.LinkSetMaster(host, s.bridge); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %w", s.hostName, s.bridge.Attrs().Name, err)
		}
	}
	if err := setHairpin(host); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", s.hostName, err)
	}
	return nil
}

// setHairpin lets the bridge send a frame back out of the port it came in
// on: a pod reaching its own host port is DNATed back to itself.
func setHairpin(host netlink.Link) error {
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("set hairpin mode on %s: %w", host.Attrs().Name, err)
	}
	return nil
}

// configurePod brings up lo and eth0 in the pod netns, gives eth0 its
// address and routes through the gateway.
func configurePod(h *netlink.Handle, addr netip.Prefix, gateway netip.Addr) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in pod netns: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in pod netns: %w", err)
	}
	eth, err := h.LinkByName(podIface)
	if err != nil {
		return fmt.Errorf("find %s in pod netns: %w", podIface, err)
	}
	if err := h.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("add address %s to %s in pod netns: %w", addr, podIface, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up in pod netns: %w", podIface, err)
	}
	def := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gateway.AsSlice(), Dst: ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0))}
	if err := h.RouteReplace(def); err != nil {
		return fmt.Errorf("add default route via %s in pod netns: %w", gateway, err)
	}
	return nil
}

// deleteLink deletes the named link; a missing link is not an error.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	// ENODEV: the link went between the lookup and the delete, as a veth
	// does on its own when the runtime removes the pod's network namespace.
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// bridgePorts returns the names of the pod veths attached to the bridge.
func bridgePorts(bridge netlink.Link) ([]string, error) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var names []string
	for _, l := range links {
		_, isVeth := l.(*netlink.Veth)
		if isVeth && l.Attrs().MasterIndex == bridge.Attrs().Index && strings.HasPrefix(l.Attrs().Name, vethPrefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

const (
	// brForwarding is BR_STATE_FORWARDING as sysfs shows a bridge port's
	// state.
	brForwarding = "3"
	// forwardingTimeout bounds the wait for a new port: the kernel's
	// link-watch worker, which enables it, runs at least once a second.
	forwardingTimeout = 2 * time.Second
)

// waitForwarding waits until the bridge forwards frames through the port.
// The kernel enables a port only once its link-watch worker has handled the
// carrier change that bringing eth0 up causes, asynchronously, on a work
// queue: a packet sent to the pod before then is dropped, and a TCP client
// that connects at once loses a second to its SYN retransmit (measured: one
// first connection in two within 2 ms of setup).
func waitForwarding(ctx context.Context, port string) error {
	path := filepath.Join("/sys/class/net", port, "brport/state")
	deadline := time.Now().Add(forwardingTimeout)
	delay := 50 * time.Microsecond
	for {
		state, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read state of bridge port: %w", err)
		}
		if strings.TrimSpace(string(state)) == brForwarding {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge port %s not forwarding after %v (state %s)", port, forwardingTimeout, bytes.TrimSpace(state))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for bridge port %s: %w", port, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}
