package agent

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"
)

func TestHostIPsCache(t *testing.T) {
	reads := 0
	answers := []struct {
		ips []string
		err error
	}{{ips: []string{"192.0.2.7"}}, {err: errors.New("netlink down")}, {ips: []string{"192.0.2.8"}}}
	h := &hostIPs{log: slog.New(slog.DiscardHandler), read: func() ([]string, error) {
		a := answers[reads]
		reads++
		return a.ips, a.err
	}}
	if got := h.get(); !slices.Equal(got, []string{"192.0.2.7"}) {
		t.Fatalf("first get = %v", got)
	}
	if h.get(); reads != 1 {
		t.Errorf("%d reads within the TTL, want 1", reads)
	}
	h.when = time.Now().Add(-2 * hostIPsTTL)
	if got := h.get(); !slices.Equal(got, []string{"192.0.2.7"}) {
		t.Errorf("get after a failed read = %v, want the addresses read before", got)
	}
	h.when = time.Now().Add(-2 * hostIPsTTL)
	if got := h.get(); !slices.Equal(got, []string{"192.0.2.8"}) {
		t.Errorf("get after the TTL = %v, want the new addresses", got)
	}
}

func TestNodeName(t *testing.T) {
	if got, err := nodeName("edge-7"); err != nil || got != "edge-7" {
		t.Errorf("nodeName(edge-7) = %q, %v", got, err)
	}
	got, err := nodeName("")
	if err != nil || got == "" {
		t.Errorf("nodeName(\"\") = %q, %v; want the host name", got, err)
	}
}
