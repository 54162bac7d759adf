package agent

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/peapod/peapod/netsetup"
	"github.com/peapod/peapod/reconcile"
)

// hostIPsTTL is how long the host's addresses are reused before they are
// read again: status is computed often, and the addresses rarely change.
const hostIPsTTL = 30 * time.Second

// nodeName returns the name pods report as spec.nodeName: the configured
// one, else the host name in lower case, as kubelet derives it.
func nodeName(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", err
	}
	return strings.ToLower(host), nil
}

// hostIPs caches netsetup.HostIPs for hostIPsTTL. Safe for concurrent use.
type hostIPs struct {
	log  *slog.Logger
	read func() ([]string, error)

	mu   sync.Mutex
	ips  []string
	when time.Time
}

func newHostIPs(log *slog.Logger) *hostIPs {
	return &hostIPs{log: log, read: readHostIPs}
}

func readHostIPs() ([]string, error) {
	addrs, err := netsetup.HostIPs()
	if err != nil {
		return nil, err
	}
	ips := make([]string, len(addrs))
	for i, a := range addrs {
		ips[i] = a.String()
	}
	return ips, nil
}

// get returns the host's addresses, primary first. A failed read keeps the
// addresses read before, and is logged.
func (h *hostIPs) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.when.IsZero() && time.Since(h.when) < hostIPsTTL {
		return h.ips
	}
	h.when = time.Now()
	ips, err := h.read()
	if err != nil {
		h.log.Warn("read the host's addresses", "err", err)
		return h.ips
	}
	h.ips = ips
	return ips
}

// node describes the host to the controller.
func node(name string, ips *hostIPs) reconcile.Node {
	return reconcile.Node{Name: name, IPs: ips.get}
}
