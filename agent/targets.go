package agent

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/agent/cadvisor"
	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/image"
)

// targets tells the cAdvisor collector what to read at each scrape: every
// pod the controller knows, and each of its running containers.
type targets struct {
	// pods is the controller's view; set by run once the controller exists.
	pods    func() []corev1.Pod
	cgroups *cgroups.Manager
	// netns returns the pinned network namespace of a pod, "" for none.
	netns func(*corev1.Pod) string
}

// Targets implements cadvisor.Source.
func (t *targets) Targets() []cadvisor.Target {
	var out []cadvisor.Target
	for _, p := range t.pods() {
		cg := t.cgroups.Lookup(p.UID)
		if cg == nil {
			continue
		}
		pod := cadvisor.Target{Namespace: p.Namespace, Pod: p.Name, Cgroup: cg, NetNSPath: t.netns(&p)}
		if p.Status.StartTime != nil {
			pod.StartTime = p.Status.StartTime.Time
		}
		out = append(out, pod)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				continue
			}
			out = append(out, cadvisor.Target{
				Namespace: p.Namespace, Pod: p.Name, Container: cs.Name,
				Image: imageLabel(cs.Image), ID: cs.ContainerID,
				Cgroup:    cg.Lookup(cs.Name),
				StartTime: cs.State.Running.StartedAt.Time,
			})
		}
	}
	return out
}

// imageLabel is cAdvisor's image label as kubelet's nodes show it with
// containerd: the reference normalised (nginx:1.27 is
// docker.io/library/nginx:1.27); a reference that does not parse as
// written.
func imageLabel(ref string) string {
	r, err := image.ParseReference(ref)
	if err != nil {
		return ref
	}
	return r.String()
}
