package netsetup

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// forgetUDPFlows deletes the conntrack entries of UDP flows to the given
// host ports. UDP has no end of connection: a client that keeps sending to
// a host port keeps its entry alive, and with it the DNAT to whichever pod
// held the port when the flow began, so a pod that takes the port over
// would never see that client.
func forgetUDPFlows(ports []hostPort) error {
	var filters []netlink.CustomConntrackFilter
	for _, p := range ports {
		if p.Protocol != corev1.ProtocolUDP {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return err
		}
		if err := f.AddPort(netlink.ConntrackOrigDstPort, p.HostPort); err != nil {
			return err
		}
		filters = append(filters, f)
	}
	if len(filters) == 0 {
		return nil
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...); err != nil {
		return fmt.Errorf("delete conntrack entries of UDP host ports: %w", err)
	}
	return nil
}
