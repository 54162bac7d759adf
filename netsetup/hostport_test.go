package netsetup

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func podWithPorts(ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Ports: ports},
	}}}
}

func TestHostPortsOf(t *testing.T) {
	tests := []struct {
		name    string
		ports   []corev1.ContainerPort
		want    []hostPort
		wantErr string
	}{{
		name:  "ports without hostPort are not forwarded",
		ports: []corev1.ContainerPort{{ContainerPort: 80}},
	}, {
		name: "protocol defaults to TCP, 0.0.0.0 means any address, sorted, duplicates merged",
		ports: []corev1.ContainerPort{
			{ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP},
			{ContainerPort: 80, HostPort: 8080, HostIP: "0.0.0.0"},
			{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP},
			{ContainerPort: 443, HostPort: 8443, HostIP: "127.0.0.1"},
		},
		want: []hostPort{
			{Protocol: corev1.ProtocolTCP, HostPort: 8080, ContainerPort: 80},
			{Protocol: corev1.ProtocolTCP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8443, ContainerPort: 443},
			{Protocol: corev1.ProtocolUDP, HostPort: 5353, ContainerPort: 53},
		},
	}, {
		name: "one host port for two container ports",
		ports: []corev1.ContainerPort{
			{ContainerPort: 80, HostPort: 8080},
			{ContainerPort: 81, HostPort: 8080},
		},
		wantErr: "host port TCP *:8080 is claimed twice in the pod",
	}, {
		name:    "IPv6 host IP",
		ports:   []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, HostIP: "::1"}},
		wantErr: "only IPv4 is supported",
	}, {
		name:    "bad protocol",
		ports:   []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: "QUIC"}},
		wantErr: `unknown protocol "QUIC"`,
	}, {
		name:    "port out of range",
		ports:   []corev1.ContainerPort{{ContainerPort: 80, HostPort: 70000}},
		wantErr: "must be in 1-65535",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostPortsOf(podWithPorts(tt.ports...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("hostPortsOf mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPortTableClaim(t *testing.T) {
	any8080 := hostPort{Protocol: corev1.ProtocolTCP, HostPort: 8080, ContainerPort: 80}
	local8080 := any8080
	local8080.HostIP = netip.MustParseAddr("127.0.0.1")
	other8080 := any8080
	other8080.HostIP = netip.MustParseAddr("198.51.100.1")
	udp8080 := any8080
	udp8080.Protocol = corev1.ProtocolUDP

	dir := t.TempDir()
	tab, err := loadPortTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := podPorts{UID: "u1", Pod: "default/first", IP: netip.MustParseAddr("10.77.0.2"), Ports: []hostPort{local8080}}
	if err := tab.claim(first); err != nil {
		t.Fatal(err)
	}
	claims := []struct {
		port    hostPort
		wantErr bool
	}{
		{any8080, true},    // any address includes 127.0.0.1
		{local8080, true},  // same address
		{other8080, false}, // another address
		{udp8080, false},   // another protocol
	}
	for _, c := range claims {
		err := tab.claim(podPorts{UID: "u2", Pod: "default/second", Ports: []hostPort{c.port}})
		if c.wantErr {
			want := "host port " + c.port.String() + " is already used by pod default/first"
			if err == nil || err.Error() != want {
				t.Errorf("claim %s: err = %v, want %q", c.port, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("claim %s: %v", c.port, err)
		}
	}
	// A pod may claim its own ports again (Setup retried).
	if err := tab.claim(first); err != nil {
		t.Errorf("claim again by the same pod: %v", err)
	}

	// A new process reads the same records, and drops a record half
	// written by a process that died.
	half := filepath.Join(dir, tempPrefix+"crashed")
	if err := os.WriteFile(half, []byte(`{"uid":`), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded, err := loadPortTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tab.all(), reloaded.all(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("reloaded table mismatch (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-written record %s still there: %v", half, err)
	}
	if err := tab.release("u1"); err != nil {
		t.Fatal(err)
	}
	if err := tab.release("u1"); err != nil {
		t.Errorf("second release: %v", err)
	}
	if err := tab.claim(podPorts{UID: "u3", Pod: "default/third", Ports: []hostPort{any8080}}); err != nil {
		t.Errorf("claim after the holder released: %v", err)
	}
	reloaded, _ = loadPortTable(dir)
	if _, ok := reloaded.get("u1"); ok {
		t.Errorf("released record u1 still on disk")
	}
}
