package netsetup

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// hostPort is one port of the host forwarded to a pod.
type hostPort struct {
	Protocol corev1.Protocol `json:"protocol"`
	// HostIP restricts the forward to one local address; the zero value
	// means every local address.
	HostIP        netip.Addr `json:"hostIP,omitzero"`
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
}

func (p hostPort) String() string {
	host := "*"
	if p.HostIP.IsValid() {
		host = p.HostIP.String()
	}
	return fmt.Sprintf("%s %s:%d", p.Protocol, host, p.HostPort)
}

// overlaps reports whether p and q claim the same port of the host: same
// protocol and port, and the same host IP or either one on every address
// (as the Kubernetes scheduler counts them).
func (p hostPort) overlaps(q hostPort) bool {
	return p.Protocol == q.Protocol && p.HostPort == q.HostPort &&
		(!p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP)
}

// podPorts is what the firewall needs to know about one pod: where to send
// its host ports. It is persisted so that a restarted agent rebuilds the
// same rules.
type podPorts struct {
	UID types.UID `json:"uid"`
	// Pod is "namespace/name", for error messages and rule comments.
	Pod   string     `json:"pod"`
	IP    netip.Addr `json:"ip"`
	Ports []hostPort `json:"ports"`
}

// hostPortsOf returns the host ports a pod asks for, sorted and without
// duplicates.
func hostPortsOf(pod *corev1.Pod) ([]hostPort, error) {
	var ports []hostPort
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.HostPort == 0 {
				continue
			}
			p, err := toHostPort(cp)
			if err != nil {
				return nil, fmt.Errorf("container %s: port %d: %w", c.Name, cp.ContainerPort, err)
			}
			ports = append(ports, p)
		}
	}
	slices.SortFunc(ports, compareHostPorts)
	ports = slices.Compact(ports)
	for i := 1; i < len(ports); i++ {
		if ports[i-1].overlaps(ports[i]) {
			return nil, fmt.Errorf("host port %s is claimed twice in the pod", ports[i])
		}
	}
	return ports, nil
}

func toHostPort(cp corev1.ContainerPort) (hostPort, error) {
	p := hostPort{Protocol: cmp.Or(cp.Protocol, corev1.ProtocolTCP)}
	switch p.Protocol {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return hostPort{}, fmt.Errorf("unknown protocol %q", cp.Protocol)
	}
	if cp.HostPort < 1 || cp.HostPort > 65535 || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
		return hostPort{}, fmt.Errorf("hostPort %d and containerPort %d must be in 1-65535", cp.HostPort, cp.ContainerPort)
	}
	p.HostPort, p.ContainerPort = uint16(cp.HostPort), uint16(cp.ContainerPort)
	if cp.HostIP != "" {
		ip, err := netip.ParseAddr(cp.HostIP)
		if err != nil {
			return hostPort{}, fmt.Errorf("hostIP: %w", err)
		}
		if !ip.Is4() {
			return hostPort{}, fmt.Errorf("hostIP %s: only IPv4 is supported", ip)
		}
		if !ip.IsUnspecified() {
			p.HostIP = ip
		}
	}
	return p, nil
}

func compareHostPorts(a, b hostPort) int {
	return cmp.Or(
		strings.Compare(string(a.Protocol), string(b.Protocol)),
		cmp.Compare(a.HostPort, b.HostPort),
		a.HostIP.Compare(b.HostIP),
		cmp.Compare(a.ContainerPort, b.ContainerPort),
	)
}

// portTable holds the host ports of every pod that has some, in memory and
// as one JSON file per pod in dir. It is safe for concurrent use.
type portTable struct {
	dir string

	mu   sync.Mutex
	pods map[types.UID]podPorts
}

// loadPortTable reads the records of dir, and removes the temporary files
// of records whose writer died. Only one process may use dir.
func loadPortTable(dir string) (*portTable, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create host port directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	t := &portTable{dir: dir, pods: make(map[types.UID]podPorts)}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			continue
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var p podPorts
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("read host ports %s: %w", e.Name(), err)
		}
		t.pods[p.UID] = p
	}
	return t, nil
}

// claim records p's ports, or returns an error naming the pod that already
// holds one of them. A claim for the same UID replaces the previous one.
func (t *portTable) claim(p podPorts) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, other := range t.pods {
		if other.UID == p.UID {
			continue
		}
		for _, want := range p.Ports {
			for _, have := range other.Ports {
				if want.overlaps(have) {
					return fmt.Errorf("host port %s is already used by pod %s", want, other.Pod)
				}
			}
		}
	}
	if err := t.persist(p); err != nil {
		return err
	}
	t.pods[p.UID] = p
	return nil
}

// persist writes p's record atomically: a temporary file renamed over the
// old one.
func (t *portTable) persist(p podPorts) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(t.dir, tempPrefix)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	return os.Rename(tmp.Name(), t.path(p.UID))
}

func (t *portTable) path(uid types.UID) string {
	return filepath.Join(t.dir, string(uid)+".json")
}

// get returns the record of uid.
func (t *portTable) get(uid types.UID) (podPorts, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pods[uid]
	return p, ok
}

// release forgets the ports of uid. Releasing an unknown UID is not an error.
func (t *portTable) release(uid types.UID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := os.Remove(t.path(uid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	delete(t.pods, uid)
	return nil
}

// all returns every record, sorted by UID.
func (t *portTable) all() []podPorts {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]podPorts, 0, len(t.pods))
	for _, p := range t.pods {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b podPorts) int { return strings.Compare(string(a.UID), string(b.UID)) })
	return out
}
