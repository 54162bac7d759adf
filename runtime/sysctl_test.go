package runtime

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/sandbox"
)

func TestPodSysctls(t *testing.T) {
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
		{Name: "net.ipv4.ip_local_port_range", Value: "1024 65535"},
		{Name: "kernel/shm_rmid_forced", Value: "1"},
		{Name: "net.ipv4.conf.eth0/100.rp_filter", Value: "2"},
		{Name: "net/ipv4/conf/eth0.100/forwarding", Value: "1"},
		{Name: "net.ipv4.ping_group_range", Value: "0 2147483647"},
	}}
	m := &container.IDMap{HostID: 1 << 30, Size: 65536}
	got, err := podSysctls(pod, m)
	if err != nil {
		t.Fatal(err)
	}
	want := []sandbox.Sysctl{
		{Path: "net/ipv4/ip_local_port_range", Value: "1024 65535"},
		{Path: "kernel/shm_rmid_forced", Value: "1"},
		{Path: "net/ipv4/conf/eth0.100/rp_filter", Value: "2"},
		{Path: "net/ipv4/conf/eth0.100/forwarding", Value: "1"},
		{Path: "net/ipv4/ping_group_range", Value: "1073741824 1073807359"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sysctls (-want +got):\n%s", diff)
	}
	// hostUsers: true: the pod's group IDs are the host's.
	got, err = podSysctls(pod, nil)
	if err != nil || got[4].Value != "0 2147483647" {
		t.Errorf("ping_group_range without a user namespace = %q, %v; want it as written", got[4].Value, err)
	}
}

func TestHostGroupRange(t *testing.T) {
	m := &container.IDMap{HostID: 100000, Size: 65536}
	for _, tt := range []struct{ in, want string }{
		{"0 2147483647", "100000 165535"},
		{"1000 1000", "101000 101000"},
		{" 10\t20 ", "100010 100020"},
		{"1 0", "1 0"},
		{"70000 80000", "1 0"},
	} {
		if got, err := hostGroupRange(tt.in, m); err != nil || got != tt.want {
			t.Errorf("hostGroupRange(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "1", "1 2 3", "-1 5", "a b", "0 4294967296"} {
		if got, err := hostGroupRange(bad, m); err == nil {
			t.Errorf("hostGroupRange(%q) = %q, want an error", bad, got)
		}
	}
}
