package reconcile

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ReasonNetworkUnavailable is the status reason, and the reason of the
// Ready condition, of a running pod whose network broke after Setup and
// could not be repaired.
const ReasonNetworkUnavailable = "NetworkUnavailable"

// networkHealth is implemented by a Network that keeps checking the pods'
// networks after Setup.
type networkHealth interface {
	// NetworkUnavailable returns why the pod's network is broken beyond
	// repair; nil when it is not known to be.
	NetworkUnavailable(uid types.UID) error
}

// NetworkHealthChanged asks for every pod's status to be computed again
// soon, as a resync does: a Network calls it when a pod's network became
// unavailable or available again, so the status need not wait for the
// resync.
func (c *Controller) NetworkHealthChanged() {
	c.mu.Lock()
	for key := range c.workers {
		c.relistKeys[key] = true
	}
	c.mu.Unlock()
	poke(c.relistPoke)
}

// reportNetwork marks the status of a running pod whose network is
// unavailable: the pod and its containers are not ready, and the pod's
// reason says why, as kubectl shows it. The status is recomputed on every
// resync and NetworkHealthChanged, so it clears once the network is back.
func (w *worker) reportNetwork(p *corev1.Pod, v *podView) {
	h, ok := w.c.net.(networkHealth)
	if !ok || v == nil || !v.deletingFrom.IsZero() || p.Spec.HostNetwork || p.Status.Reason != "" {
		return
	}
	err := h.NetworkUnavailable(p.UID)
	if err == nil {
		return
	}
	st := &p.Status
	st.Reason, st.Message = ReasonNetworkUnavailable, "pod network unavailable: "+err.Error()
	for i := range st.ContainerStatuses {
		st.ContainerStatuses[i].Ready = false
	}
	prev := w.published(p.UID)
	for i, c := range st.Conditions {
		switch c.Type {
		case corev1.PodReady, corev1.ContainersReady, corev1.PodReadyToStartContainers:
			if c.Status == corev1.ConditionTrue {
				c.Status = corev1.ConditionFalse
				c.LastTransitionTime = transitionTime(statusInput{prev: prev, now: w.c.clock.Now()}, c)
			}
			c.Reason, c.Message = ReasonNetworkUnavailable, st.Message
			st.Conditions[i] = c
		}
	}
}
