package netsetup

import (
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// Chains of the forward filter.
const (
	chainForward = "forward"
	chainToPods  = "forward-to-pods"
)

// addForwardFilter keeps the pods unreachable from other interfaces except
// through their host ports. IP forwarding, which pods need to reach beyond
// the bridge, also makes the host route a neighbour's packets for the pod
// CIDR straight to the pods, on any port. The filter lets into the bridge,
// from any other interface, only the answers of connections (ct state
// established,related) and connections a host port DNATed (ct status dnat);
// every other packet for a pod address that leaves through the bridge is
// dropped: new connections, and invalid and untracked packets, which could
// tell a port scanner which ports are open.
//
// It drops nothing else. A drop in any base chain is final for the packet,
// so the base chain sends only the packets bound for this table's bridge
// and CIDR to the dropping chain, and its policy is accept: the traffic of
// other bridges, of other peapod agents (each has its own table) and of
// the host stays to the host's own firewall.
//
// Pod-to-pod traffic on the bridge is not routed, but with br_netfilter
// (bridge-nf-call-iptables=1) the kernel passes bridged IPv4 packets
// through this hook too, as coming in and going out through the bridge:
// "iifname != bridge" lets them through.
func (f *firewall) addForwardFilter(c ruleWriter) {
	accept := nftables.ChainPolicyAccept
	forward := c.AddChain(&nftables.Chain{Name: chainForward, Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	toPods := c.AddChain(f.chain(chainToPods))
	c.AddRule(&nftables.Rule{Table: f.table, Chain: forward, Exprs: slices.Concat(
		metaName(expr.MetaKeyOIFNAME, expr.CmpOpEq, f.bridge),
		metaName(expr.MetaKeyIIFNAME, expr.CmpOpNeq, f.bridge),
		ipAddr(ipDst, f.cidr),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: toPods.Name}},
	)})
	for _, match := range [][]expr.Any{ctStateEstablishedRelated(), ctStatusDNAT()} {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: toPods, Exprs: slices.Concat(
			match, []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})})
	}
	// The counter shows in `nft list table ip <bridge>` what was refused.
	c.AddRule(&nftables.Rule{Table: f.table, Chain: toPods, Exprs: []expr.Any{
		&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}})
}

// ctStateEstablishedRelated is `ct state established,related`.
func ctStateEstablishedRelated() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}
