package netsetup

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ipsDstNAT is IPS_DST_NAT, the conntrack status bit of a DNATed connection
// (linux/netfilter/nf_conntrack_common.h); x/sys does not define it.
const ipsDstNAT = 1 << 5

// Chains of the table. The base chains only dispatch; per-pod rules live in
// chainHostPorts, each tagged with its pod's UID in the rule comment.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainGuard       = "localnet-guard"
	chainHostPorts   = "hostports"
)

// firewall owns one nftables table of family ip. Its methods are safe for
// concurrent use.
type firewall struct {
	table  *nftables.Table
	bridge string
	cidr   netip.Prefix

	// mu serializes transactions, so that a rewrite of the whole table and
	// a change of one pod's rules never interleave.
	mu sync.Mutex
}

func newFirewall(table, bridge string, cidr netip.Prefix) *firewall {
	return &firewall{
		table:  &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4},
		bridge: bridge,
		cidr:   cidr,
	}
}

func (f *firewall) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: f.table}
}

// rewrite replaces the table with the base rules and the rules of the pods
// that snapshot returns, in one transaction: packets never see a table
// half-built, and rules left by an earlier process or added by hand are
// gone. snapshot is called under the firewall's lock, so a concurrent
// per-pod change lands either before it or after the rewrite.
func (f *firewall) rewrite(snapshot func() []podPorts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	// Deleting a table that does not exist fails the whole batch, adding
	// one that exists does not: add, delete, add.
	c.AddTable(f.table)
	c.DelTable(f.table)
	c.AddTable(f.table)
	f.addBaseChains(c)
	for _, p := range snapshot() {
		f.addPodRules(c, p)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table %s: %w", f.table.Name, err)
	}
	return nil
}

func (f *firewall) addBaseChains(c ruleWriter) {
	f.addHostPortChains(c)
	post := f.natChain(c, chainPostrouting, nftables.ChainHookPostrouting, 100)
	for _, match := range f.masqueradeMatches() {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: post, Exprs: slices.Concat(match, []expr.Any{&expr.Masq{}})})
	}
	f.addLocalnetGuard(c)
	f.addForwardFilter(c)
}

func (f *firewall) natChain(c ruleWriter, name string, hook *nftables.ChainHook, prio nftables.ChainPriority) *nftables.Chain {
	return c.AddChain(&nftables.Chain{Name: name, Table: f.table, Type: nftables.ChainTypeNAT,
		Hooknum: hook, Priority: nftables.ChainPriorityRef(prio)})
}

// addHostPortChains makes host ports answer on every local address, for
// packets from other hosts and pods (prerouting) and from the host itself
// (output; nft rejects the name "dstnat" in an output hook, hence the
// number).
func (f *firewall) addHostPortChains(c ruleWriter) {
	hostPorts := c.AddChain(f.chain(chainHostPorts))
	for _, base := range []*nftables.Chain{
		f.natChain(c, chainPrerouting, nftables.ChainHookPrerouting, -100),
		f.natChain(c, chainOutput, nftables.ChainHookOutput, -100),
	} {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: base, Exprs: slices.Concat(
			fibDaddrLocal(),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: hostPorts.Name}},
		)})
	}
}

// addLocalnetGuard drops packets that arrive on the bridge for 127.0.0.0/8.
// route_localnet, set on the bridge for 127.0.0.1:hostPort, would otherwise
// let a pod reach the host's loopback services through its gateway
// (CVE-2020-8558). The chain runs before NAT, so the answers of a pod to a
// masqueraded 127.0.0.1 client, still addressed to the bridge IP, pass.
func (f *firewall) addLocalnetGuard(c ruleWriter) {
	guard := c.AddChain(&nftables.Chain{Name: chainGuard, Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
	c.AddRule(&nftables.Rule{Table: f.table, Chain: guard, Exprs: slices.Concat(
		metaName(expr.MetaKeyIIFNAME, expr.CmpOpEq, f.bridge),
		ipAddr(ipDst, loopbackNet),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
	)})
}

// masqueradeMatches returns the matches of the postrouting rules whose
// packets get the address of the interface they leave through.
func (f *firewall) masqueradeMatches() [][]expr.Any {
	return [][]expr.Any{
		// Pods reaching anything beyond the bridge: the outside world has
		// no route back to the pod CIDR.
		slices.Concat(ipAddr(ipSrc, f.cidr), metaName(expr.MetaKeyOIFNAME, expr.CmpOpNeq, f.bridge)),
		// The host reaching 127.0.0.1:hostPort: once DNATed the packet
		// leaves through the bridge (route_localnet allows it), and the pod
		// could not answer a loopback source.
		slices.Concat(metaName(expr.MetaKeyOIFNAME, expr.CmpOpEq, f.bridge), ipAddr(ipSrc, loopbackNet), ctStatusDNAT()),
		// A pod reaching a pod, itself included (hairpin), through a host
		// port: without masquerade the answer would go straight over the
		// bridge, skipping the host's conntrack and its reverse DNAT (unless
		// br_netfilter is on; for the hairpin case it is needed even then,
		// as the pod would answer itself through its own loopback).
		slices.Concat(metaName(expr.MetaKeyOIFNAME, expr.CmpOpEq, f.bridge), ipAddr(ipSrc, f.cidr), ctStatusDNAT()),
	}
}

func (f *firewall) addPodRules(c ruleWriter, p podPorts) {
	for _, hp := range p.Ports {
		c.AddRule(&nftables.Rule{
			Table:    f.table,
			Chain:    f.chain(chainHostPorts),
			Exprs:    dnatExprs(hp, p.IP),
			UserData: userdata.AppendString(nil, userdata.TypeComment, ruleComment(p, hp)),
		})
	}
}

// ruleComment starts with the pod UID, which is how the rules of a pod are
// found again; the rest is for people reading `nft list ruleset`.
func ruleComment(p podPorts, hp hostPort) string {
	return fmt.Sprintf("%s %s %s", p.UID, p.Pod, hp)
}

func ruleUID(r *nftables.Rule) types.UID {
	comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	uid, _, _ := strings.Cut(comment, " ")
	return types.UID(uid)
}

// setPod replaces the rules of p.UID by those of p, in one transaction.
func (f *firewall) setPod(p podPorts) error {
	return f.replacePod(p.UID, func(c *nftables.Conn) { f.addPodRules(c, p) })
}

// deletePod removes the rules of uid. Without a table there is nothing to
// remove.
func (f *firewall) deletePod(uid types.UID) error {
	err := f.replacePod(uid, func(*nftables.Conn) {})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func (f *firewall) replacePod(uid types.UID, add func(*nftables.Conn)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	rules, err := c.GetRules(f.table, f.chain(chainHostPorts))
	if err != nil {
		return fmt.Errorf("list rules of %s %s: %w", f.table.Name, chainHostPorts, err)
	}
	for _, r := range rules {
		if ruleUID(r) == uid {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("delete rule %d of pod %s: %w", r.Handle, uid, err)
			}
		}
	}
	add(c)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write host port rules of pod %s: %w", uid, err)
	}
	return nil
}

// remove deletes the table; a missing table is not an error.
func (f *firewall) remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	c.AddTable(f.table)
	c.DelTable(f.table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w", f.table.Name, err)
	}
	return nil
}

// dnatExprs is `[ip daddr HOSTIP] meta l4proto PROTO th dport PORT dnat to
// IP:CONTAINERPORT`.
func dnatExprs(hp hostPort, podIP netip.Addr) []expr.Any {
	var e []expr.Any
	if hp.HostIP.IsValid() {
		e = ipAddr(ipDst, netip.PrefixFrom(hp.HostIP, 32))
	}
	return slices.Concat(e, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4proto(hp.Protocol)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(hp.HostPort)},
		&expr.Immediate{Register: 1, Data: podIP.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(hp.ContainerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	})
}

func l4proto(p corev1.Protocol) byte {
	switch p {
	case corev1.ProtocolUDP:
		return unix.IPPROTO_UDP
	case corev1.ProtocolSCTP:
		return unix.IPPROTO_SCTP
	default:
		return unix.IPPROTO_TCP
	}
}

// Offsets of the addresses in the IPv4 header.
const (
	ipSrc = 12
	ipDst = 16
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// ipAddr matches the IPv4 address at offset (ipSrc or ipDst) of the network
// header against p.
func ipAddr(offset uint32, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// metaName compares the input or output interface name.
func metaName(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

// fibDaddrLocal is `fib daddr type local`.
func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ctStatusDNAT is `ct status dnat`.
func ctStatusDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}
