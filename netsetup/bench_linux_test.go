package netsetup

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// The benchmarks measure one pod's network set-up, netns creation excluded.
// Run them with a bounded count, as every iteration leaves a netns until
// the end: go test -run '^$' -bench Setup -benchtime 50x ./netsetup/

// BenchmarkSetup is Manager.Setup: veth into the netns, bridge port,
// address, routes, sysctls, lease.
func BenchmarkSetup(b *testing.B) {
	e := newTestEnv(b)
	for b.Loop() {
		b.StopTimer()
		pod, nsPath := testPod(b, "bench"), newNetNS(b)
		b.StartTimer()
		if _, err := e.m.Setup(context.Background(), pod, nsPath); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetupIPCommands is the same work done with ip(8) and sysctl(8),
// as a shell-script or CNI-exec based agent would: the reference for
// BenchmarkSetup. It takes no lease and adds no firewall rule.
func BenchmarkSetupIPCommands(b *testing.B) {
	e := newTestEnv(b)
	addr := e.gateway()
	for b.Loop() {
		b.StopTimer()
		pod, nsPath := testPod(b, "bench"), newNetNS(b)
		addr = addr.Next()
		b.StartTimer()
		if err := setupWithIP(e, vethName(pod.UID), nsPath, netip.PrefixFrom(addr, e.cidr.Bits())); err != nil {
			b.Fatal(err)
		}
	}
}

func setupWithIP(e *testEnv, veth, nsPath string, addr netip.Prefix) error {
	inside := strings.Join([]string{
		"link set lo up",
		"addr add " + addr.String() + " dev eth0",
		"link set eth0 up",
		"route add default via " + e.gateway().String(),
	}, "\n")
	cmds := []*exec.Cmd{
		exec.Command("ip", "link", "add", veth, "mtu", fmt.Sprint(e.m.mtu), "master", e.bridge, "up",
			"type", "veth", "peer", "name", "eth0", "netns", nsPath),
		exec.Command("ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on"),
		exec.Command("nsenter", "--net="+nsPath, "ip", "-batch", "-"),
		exec.Command("nsenter", "--net="+nsPath, "sysctl", "-q", "-w", "net.ipv4.ip_unprivileged_port_start=0",
			"net.ipv4.ping_group_range=0 2147483647"),
	}
	cmds[2].Stdin = strings.NewReader(inside)
	for _, c := range cmds {
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", c, err, out)
		}
	}
	return nil
}
