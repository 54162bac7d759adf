// Package netsetup gives pods their network, in process, through netlink and
// nftables: what the CNI bridge, host-local and portmap plugins do together,
// without CNI and without exec.
//
// Every pod gets a veth pair: the host end on a bridge (hairpin on), the pod
// end named eth0, created directly in the pod's network namespace, with an
// IPv4 address leased from the pod CIDR and a default route through the
// bridge's address, the first of the CIDR. Setup returns once the bridge
// forwards through the new port.
//
// One nftables table of family ip, named after the bridge, holds every rule
// the package writes:
//
//	prerouting, output  fib daddr type local jump hostports
//	hostports           one DNAT rule per host port, commented with the pod UID
//	postrouting         masquerade: pods to the outside, 127.0.0.1:hostPort,
//	                    pods to pods through a host port (hairpin)
//	localnet-guard      drop what arrives on the bridge for 127.0.0.0/8
//	forward             packets for the pod CIDR into the bridge from another
//	                    interface: jump forward-to-pods
//	forward-to-pods     accept answers and DNATed host ports, drop the rest
//
// Keep repairs all this while the pods run: Repair checks the bridge, its
// address, the host sysctls, the table's shape (each chain's rules, known
// by their comment and number of expressions) and each pod's veth, and
// puts back what someone else deleted. It runs on netlink link and address
// events, on nftables monitor events of other processes on the table, and
// every 30 s with a look into each pod's netns.
//
// State lives under Options.StateDir: one lease file per address in
// ipam/<cidr>/, made atomically with link(2), and one JSON record per pod
// with host ports in hostports/. A process killed at any point leaves
// nothing that a later Setup, Teardown, Ensure or GC does not finish or
// remove: leases are never lost or given twice, and Ensure rewrites the
// table to exactly the rules of the recorded pods.
package netsetup
