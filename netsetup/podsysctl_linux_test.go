package netsetup

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestPodDefaults(t *testing.T) {
	paths := func(ss []sysctl) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.path)
		}
		return out
	}
	pod := &corev1.Pod{}
	if diff := cmp.Diff(paths(podSysctls), paths(podDefaults(pod))); diff != "" {
		t.Errorf("pod without sysctls (-want +got):\n%s", diff)
	}
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
		{Name: "net.ipv4.ip_unprivileged_port_start", Value: "1024"},
		{Name: "net/ipv4/ping_group_range", Value: "1 0"},
		{Name: "net.ipv4.tcp_syncookies", Value: "1"},
	}}
	if got := podDefaults(pod); len(got) != 0 {
		t.Errorf("pod setting both: defaults %v, want none", paths(got))
	}
	pod.Spec.SecurityContext.Sysctls = pod.Spec.SecurityContext.Sysctls[1:]
	if diff := cmp.Diff([]string{"net/ipv4/ip_unprivileged_port_start"}, paths(podDefaults(pod))); diff != "" {
		t.Errorf("pod setting ping_group_range (-want +got):\n%s", diff)
	}
}
