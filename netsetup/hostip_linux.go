package netsetup

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// HostIPs returns the host's addresses as kubelet reports a node's: the
// global addresses of the interface that carries the default route, IPv4
// first, then IPv6. It returns none, and no error, on a host without a
// default route. It only reads the routing table and addresses.
func HostIPs() ([]netip.Addr, error) {
	var ips []netip.Addr
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		found, err := defaultRouteAddrs(family)
		if err != nil {
			return nil, err
		}
		ips = append(ips, found...)
	}
	return ips, nil
}

// defaultRouteAddrs returns the global unicast addresses of family on the
// interface of the first default route of that family.
func defaultRouteAddrs(family int) ([]netip.Addr, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, family) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	i := slices.IndexFunc(routes, isDefaultRoute)
	if i < 0 {
		return nil, nil
	}
	link, err := netlink.LinkByIndex(routes[i].LinkIndex)
	if err != nil {
		return nil, fmt.Errorf("find interface of the default route: %w", err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, family) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && ip.Unmap().IsGlobalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func isDefaultRoute(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}
