package runtime

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/node/util/sysctl"

	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/sandbox"
)

// pingGroupRange is the one safe sysctl whose value holds IDs.
const pingGroupRange = "net/ipv4/ping_group_range"

// podSysctls translates the pod's spec.securityContext.sysctls, which
// manifests validated, into the sandbox's: paths under /proc/sys, and the
// group range of ping_group_range from the pod's user namespace (userNS,
// nil for hostUsers pods) to host IDs.
func podSysctls(pod *corev1.Pod, userNS *container.IDMap) ([]sandbox.Sysctl, error) {
	sc := pod.Spec.SecurityContext
	if sc == nil {
		return nil, nil
	}
	var out []sandbox.Sysctl
	for _, s := range sc.Sysctls {
		p := sysctlPath(s.Name)
		v := s.Value
		if p == pingGroupRange && userNS != nil {
			var err error
			if v, err = hostGroupRange(v, userNS); err != nil {
				return nil, fmt.Errorf("spec.securityContext.sysctls %s: %w", s.Name, err)
			}
		}
		out = append(out, sandbox.Sysctl{Path: p, Value: v})
	}
	return out, nil
}

// sysctlPath turns a sysctl name, with "." or "/" separators as Kubernetes
// accepts (net.ipv4.conf.eth0/100.rp_filter or
// net/ipv4/conf/eth0.100/rp_filter), into its path under /proc/sys.
func sysctlPath(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, sysctl.NormalizeName(name))
}

// hostGroupRange translates ping_group_range's "FIRST LAST" from the
// pod's group IDs to the host's. The agent writes the sysctl from the
// host's user namespace, and the kernel reads the range in the writer's
// (KERNEL-NOTES Q4), so "0 2147483647" written as is would name host
// groups 0 and up, none of the pod's. The part of the range outside the
// pod's IDs has no host counterpart and is dropped; an empty range ("1 0",
// the kernel's default) disables ICMP sockets.
func hostGroupRange(v string, m *container.IDMap) (string, error) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return "", fmt.Errorf("value %q: want two group IDs, FIRST LAST", v)
	}
	first, err1 := strconv.ParseUint(f[0], 10, 32)
	last, err2 := strconv.ParseUint(f[1], 10, 32)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("value %q: want two group IDs, FIRST LAST", v)
	}
	last = min(last, uint64(m.Size)-1)
	if first > last {
		return "1 0", nil
	}
	return fmt.Sprintf("%d %d", uint64(m.HostID)+first, uint64(m.HostID)+last), nil
}
