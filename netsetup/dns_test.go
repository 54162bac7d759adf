package netsetup

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

const (
	resolvedStub = `# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
nameserver 127.0.0.53
options edns0 trust-ad
search corp.example.
`
	resolvedUpstream = `# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).
nameserver 192.0.2.53
nameserver 198.51.100.53
search corp.example
`
	plainHost = `; comment
nameserver 192.0.2.10
nameserver 192.0.2.11
search a.example b.example
search c.example d.example
options ndots:2
options timeout:1 rotate
`
)

func ptr[T any](v T) *T { return &v }

func TestResolvConf(t *testing.T) {
	tests := []struct {
		name     string
		policy   corev1.DNSPolicy
		config   *corev1.PodDNSConfig
		host     string
		upstream string
		want     string
	}{{
		name:   "Default copies the host, last search line wins, options accumulate",
		policy: corev1.DNSDefault,
		host:   plainHost,
		want: "nameserver 192.0.2.10\nnameserver 192.0.2.11\nsearch c.example d.example\n" +
			"options ndots:2 timeout:1 rotate\n",
	}, {
		name:     "ClusterFirst falls back to Default; the resolved stub is replaced by its upstreams",
		policy:   corev1.DNSClusterFirst,
		host:     resolvedStub,
		upstream: resolvedUpstream,
		want:     "nameserver 192.0.2.53\nnameserver 198.51.100.53\nsearch corp.example\noptions edns0 trust-ad\n",
	}, {
		name:   "ClusterFirstWithHostNet falls back to Default; no upstream file drops the stub",
		policy: corev1.DNSClusterFirstWithHostNet,
		host:   "nameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.10\n",
		want:   "nameserver 192.0.2.10\n",
	}, {
		name:     "loopback servers are replaced once, in place",
		policy:   corev1.DNSDefault,
		host:     "nameserver 192.0.2.9\nnameserver 127.0.0.1\nnameserver 127.0.0.53\nnameserver 192.0.2.10\n",
		upstream: "nameserver 192.0.2.53\nnameserver 127.0.0.2\n",
		want:     "nameserver 192.0.2.9\nnameserver 192.0.2.53\nnameserver 192.0.2.10\n",
	}, {
		name:   "None uses the dnsConfig only",
		policy: corev1.DNSNone,
		host:   plainHost,
		config: &corev1.PodDNSConfig{
			Nameservers: []string{"203.0.113.1"},
			Searches:    []string{"svc.example"},
			Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("5")}, {Name: "edns0"}},
		},
		want: "nameserver 203.0.113.1\nsearch svc.example\noptions ndots:5 edns0\n",
	}, {
		name:   "None without dnsConfig is empty",
		policy: corev1.DNSNone,
		host:   plainHost,
		want:   "",
	}, {
		name:   "dnsConfig merges: servers and searches appended once, options override by name",
		policy: corev1.DNSDefault,
		host:   plainHost,
		config: &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.11", "203.0.113.1", "203.0.113.2"},
			Searches:    []string{"d.example.", "e.example"},
			Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("5")}, {Name: "single-request"}},
		},
		// 4 distinct servers, cut to 3.
		want: "nameserver 192.0.2.10\nnameserver 192.0.2.11\nnameserver 203.0.113.1\n" +
			"search c.example d.example e.example\noptions ndots:5 timeout:1 rotate single-request\n",
	}, {
		name:   "empty policy is Default",
		host:   "nameserver 192.0.2.10\n",
		want:   "nameserver 192.0.2.10\n",
		policy: "",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{DNSPolicy: tt.policy, DNSConfig: tt.config}}
			var upstream []byte
			if tt.upstream != "" {
				upstream = []byte(tt.upstream)
			}
			got := string(ResolvConf(pod, []byte(tt.host), upstream))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ResolvConf mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvConfSearchLimits(t *testing.T) {
	domain := func(i, length int) string {
		s := fmt.Sprintf("d%d.", i)
		return s + strings.Repeat("x", length-len(s))
	}
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("s%d.example", i))
	}
	long := []string{domain(0, 254), domain(1, 253)}
	var wide []string // 10 × 250 characters: 2509 with spaces
	for i := range 10 {
		wide = append(wide, domain(i, 250))
	}
	tests := []struct {
		name     string
		searches []string
		want     []string
	}{
		{"more than 32 domains are cut to 32", many, many[:32]},
		{"domains over 253 characters are dropped", long, long[1:]},
		{"the line is cut to 2048 characters from the end", wide, wide[:8]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{
				DNSPolicy: corev1.DNSNone,
				DNSConfig: &corev1.PodDNSConfig{Searches: tt.searches},
			}}
			got := strings.Fields(strings.TrimPrefix(string(ResolvConf(pod, nil, nil)), "search "))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("search list mismatch (-want +got):\n%s", diff)
			}
			if line := strings.Join(got, " "); len(line) > maxSearchListChars {
				t.Errorf("search line is %d characters, over %d", len(line), maxSearchListChars)
			}
		})
	}
}
