package netsetup

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	ksysctl "k8s.io/component-helpers/node/util/sysctl"
)

// podDefaults returns the podSysctls that the pod does not set in its
// spec.securityContext.sysctls: the runtime wrote those when it created the
// sandbox, and Setup, which runs after it (and again after an agent
// restart), must not overwrite them.
func podDefaults(pod *corev1.Pod) []sysctl {
	set := make(map[string]bool)
	if sc := pod.Spec.SecurityContext; sc != nil {
		for _, s := range sc.Sysctls {
			// The dot form with "/" standing for "." in a name, as
			// Kubernetes normalises it; swapped, it is the path.
			name := ksysctl.NormalizeName(s.Name)
			set[strings.NewReplacer(".", "/", "/", ".").Replace(name)] = true
		}
	}
	var out []sysctl
	for _, s := range podSysctls {
		if !set[s.path] {
			out = append(out, s)
		}
	}
	return out
}
