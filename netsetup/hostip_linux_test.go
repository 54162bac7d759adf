package netsetup

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// TestHostIPs compares HostIPs with what ip(8) says of the default route's
// interface. It reads the host's tables only, so it needs no root.
func TestHostIPs(t *testing.T) {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "default").Output()
	if err != nil {
		t.Skipf("ip route: %v", err)
	}
	fields := strings.Fields(string(out))
	dev := ""
	for i, f := range fields {
		if f == "dev" && i+1 < len(fields) {
			dev = fields[i+1]
			break
		}
	}
	if dev == "" {
		t.Skip("the host has no IPv4 default route")
	}
	out, err = exec.Command("ip", "-4", "-o", "addr", "show", "dev", dev, "scope", "global").Output()
	if err != nil {
		t.Fatalf("ip addr: %v", err)
	}
	var want []netip.Addr
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			if p, err := netip.ParsePrefix(f[3]); err == nil {
				want = append(want, p.Addr())
			}
		}
	}
	got, err := HostIPs()
	if err != nil {
		t.Fatal(err)
	}
	var got4 []netip.Addr
	for _, ip := range got {
		if ip.Is4() {
			got4 = append(got4, ip)
		}
	}
	if len(want) == 0 || len(got4) != len(want) || got4[0] != want[0] {
		t.Errorf("HostIPs() IPv4 = %v, want %v (the addresses of %s)", got4, want, dev)
	}
	if len(got) > 0 && !got[0].Is4() {
		t.Errorf("HostIPs() = %v, want IPv4 first", got)
	}
}
