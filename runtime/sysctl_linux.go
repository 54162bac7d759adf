package runtime

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/userns"
)

// sandboxSysctls returns the pod's sysctls for its sandbox, group IDs
// translated to the pod's host range (allocated already, unless the pod
// has hostUsers: true).
func (r *Runtime) sandboxSysctls(pod *corev1.Pod) ([]sandbox.Sysctl, error) {
	var m *container.IDMap
	if usesUserNS(pod) {
		base, err := r.ids.Allocate(pod.UID)
		if err != nil {
			return nil, err
		}
		m = &container.IDMap{HostID: base, Size: userns.RangeSize}
	}
	return podSysctls(pod, m)
}
