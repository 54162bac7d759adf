package reconcile

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podProblem is why a pod cannot start its containers, shown as the pod's
// status reason and message.
type podProblem struct {
	reason string
	err    error
	// target is the UID of the pod the worker was driving towards.
	target types.UID
}

func (p *podProblem) Error() string { return p.reason + ": " + p.err.Error() }
func (p *podProblem) Unwrap() error { return p.err }

// statusInput is everything a pod's status is computed from.
type statusInput struct {
	pod *corev1.Pod
	// view is the pod's sandbox, nil before it exists.
	view    *podView
	backoff *backoff
	problem *podProblem
	// prev is the status published last time for the same UID, if any: it
	// keeps startTime and the conditions' lastTransitionTime stable.
	prev *corev1.PodStatus
	now  time.Time
	// evicted is set when the worker evicted the pod.
	evicted *eviction
	// probes, when set, decides whether running containers have started
	// and are ready; without it they are once they run.
	probes *prober
}

// podStatus computes a pod's status the way kubelet does.
func podStatus(in statusInput) corev1.PodStatus {
	if in.evicted != nil {
		return evictedStatus(in)
	}
	st := corev1.PodStatus{
		QOSClass:  qosClass(in.pod),
		StartTime: startTime(in),
	}
	if in.problem != nil {
		st.Reason, st.Message = in.problem.reason, in.problem.err.Error()
	}
	for _, c := range in.pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, containerStatus(in, c))
	}
	for _, c := range in.pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(in, c))
	}
	st.Phase = podPhase(in.pod.Spec.RestartPolicy, st.ContainerStatuses)
	if init := initStatus(in); !init.done {
		st.Phase = corev1.PodPending
		if init.failed {
			st.Phase = corev1.PodFailed
		}
	}
	if v := in.view; v != nil {
		st.PodIPs = podIPs(v.ips)
		if len(v.ips) > 0 {
			st.PodIP = v.ips[0]
		}
	}
	st.Conditions = conditions(in, st)
	return st
}

func startTime(in statusInput) *metav1.Time {
	switch {
	case in.prev != nil && in.prev.StartTime != nil:
		return in.prev.StartTime
	case in.view != nil && !in.view.createdAt.IsZero():
		return &metav1.Time{Time: in.view.createdAt}
	default:
		return &metav1.Time{Time: in.now}
	}
}

func podIPs(ips []string) []corev1.PodIP {
	var out []corev1.PodIP
	for _, ip := range ips {
		out = append(out, corev1.PodIP{IP: ip})
	}
	return out
}

// containerStatus reports one container from its two latest attempts and
// the decision about it.
func containerStatus(in statusInput, c corev1.Container) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	cv := &containerView{}
	if in.view != nil && in.view.containers[c.Name] != nil {
		cv = in.view.containers[c.Name]
	}
	d := decide(in.pod, c.Name, cv, in.backoff, in.now)
	if completedSidecar(in, &c, cv) {
		d = decision{}
	}
	latest := cv.latest
	if latest != nil {
		cs.RestartCount = int32(latest.Attempt)
		cs.ContainerID = latest.ID
		cs.ImageID = latest.ImageID
	}
	if cv.previous != nil && cv.previous.Phase == ContainerExited {
		cs.LastTerminationState.Terminated = terminated(cv.previous)
	}
	switch {
	case latest != nil && latest.Phase == ContainerRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Time{Time: latest.StartedAt}}
		cs.Ready = true
		if in.probes != nil {
			started, ready := in.probes.status(in.pod.UID, &c, latest.Attempt)
			cs.Started, cs.Ready = &started, ready
		}
	case latest != nil && latest.Phase == ContainerExited && d.waiting == nil && !d.start:
		cs.State.Terminated = terminated(latest)
	case latest != nil && latest.Phase == ContainerExited:
		cs.LastTerminationState.Terminated = terminated(latest)
		cs.State.Waiting = waiting(in.pod, d)
	default:
		cs.State.Waiting = waiting(in.pod, d)
	}
	if cs.Started == nil {
		started := cs.State.Running != nil
		cs.Started = &started
	}
	return cs
}

// waiting returns a waiting container's state: its back-off, or kubelet's
// default reason, PodInitializing in a pod with init containers.
func waiting(pod *corev1.Pod, d decision) *corev1.ContainerStateWaiting {
	switch {
	case d.waiting != nil:
		return d.waiting
	case len(pod.Spec.InitContainers) > 0:
		return &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	default:
		return &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
}

func terminated(s *ContainerState) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode:    int32(s.ExitCode),
		Signal:      int32(s.Signal),
		Reason:      s.Reason,
		Message:     s.Message,
		StartedAt:   metav1.Time{Time: s.StartedAt},
		FinishedAt:  metav1.Time{Time: s.FinishedAt},
		ContainerID: s.ID,
	}
}

// podPhase follows kubelet's getPhase for a pod without init containers.
func podPhase(policy corev1.RestartPolicy, statuses []corev1.ContainerStatus) corev1.PodPhase {
	var running, waiting, stopped, succeeded int
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped == 0:
		return corev1.PodPending
	case policy == corev1.RestartPolicyAlways:
		return corev1.PodRunning
	case stopped == succeeded:
		return corev1.PodSucceeded
	case policy == corev1.RestartPolicyNever:
		return corev1.PodFailed
	default:
		return corev1.PodRunning
	}
}

// conditions returns the pod's conditions; readiness is "running" until
// peapod has probes.
func conditions(in statusInput, st corev1.PodStatus) []corev1.PodCondition {
	sandboxReady := in.view != nil && in.view.ready && in.problem == nil
	ready := corev1.PodCondition{Status: corev1.ConditionTrue}
	if unready := unreadyContainers(in.pod, st); len(unready) > 0 {
		ready.Status = corev1.ConditionFalse
		ready.Reason = "ContainersNotReady"
		ready.Message = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	}
	if st.Phase == corev1.PodSucceeded {
		ready = corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "PodCompleted"}
	}
	conds := []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: boolCondition(sandboxReady)},
		initializedCondition(in),
		withType(ready, corev1.PodReady),
		withType(ready, corev1.ContainersReady),
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}
	for i := range conds {
		conds[i].LastTransitionTime = transitionTime(in, conds[i])
	}
	return conds
}

// unreadyContainers names the sidecars and app containers that are not
// ready.
func unreadyContainers(pod *corev1.Pod, st corev1.PodStatus) []string {
	var out []string
	for i, cs := range st.InitContainerStatuses {
		if isSidecar(&pod.Spec.InitContainers[i]) && !cs.Ready {
			out = append(out, cs.Name)
		}
	}
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			out = append(out, cs.Name)
		}
	}
	return out
}

func withType(c corev1.PodCondition, t corev1.PodConditionType) corev1.PodCondition {
	c.Type = t
	return c
}

func boolCondition(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// transitionTime keeps a condition's lastTransitionTime while its status
// does not change.
func transitionTime(in statusInput, c corev1.PodCondition) metav1.Time {
	if in.prev != nil {
		for _, p := range in.prev.Conditions {
			if p.Type == c.Type && p.Status == c.Status {
				return p.LastTransitionTime
			}
		}
	}
	return metav1.Time{Time: in.now}
}

// qosClass computes the pod's quality-of-service class as Kubernetes does
// from its cpu and memory requests and limits: Guaranteed when every
// container limits both and requests equal limits, BestEffort when nothing
// is requested or limited, Burstable otherwise. A limit without a request
// counts as a request of the same amount, as API defaulting makes it.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	all := append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		limited := addPositive(limits, c.Resources.Limits)
		addPositive(requests, effectiveRequests(c.Resources))
		if !limited[corev1.ResourceCPU] || !limited[corev1.ResourceMemory] {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed && len(requests) == len(limits) && equalQuantities(requests, limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func effectiveRequests(r corev1.ResourceRequirements) corev1.ResourceList {
	out := r.Requests.DeepCopy()
	if out == nil {
		out = corev1.ResourceList{}
	}
	for name, q := range r.Limits {
		if _, ok := out[name]; !ok {
			out[name] = q.DeepCopy()
		}
	}
	return out
}

// addPositive adds the positive cpu and memory quantities of from to sum and
// reports which resources it added.
func addPositive(sum, from corev1.ResourceList) map[corev1.ResourceName]bool {
	added := make(map[corev1.ResourceName]bool)
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		q, ok := from[name]
		if !ok || q.Sign() <= 0 {
			continue
		}
		total := q.DeepCopy()
		if prev, ok := sum[name]; ok {
			total.Add(prev)
		}
		sum[name] = total
		added[name] = true
	}
	return added
}

func equalQuantities(a, b corev1.ResourceList) bool {
	for name, q := range a {
		other, ok := b[name]
		if !ok || q.Cmp(other) != 0 {
			return false
		}
	}
	return true
}

// describe fills in what a kubelet's node adds to a pod it runs: the node
// name, the host's addresses, a hostNetwork pod's addresses (the host's),
// and a creation time (static pods have no API server to set it: the time
// the pod was first seen, its startTime).
func (n Node) describe(p *corev1.Pod) {
	p.Spec.NodeName = n.Name
	if p.Status.StartTime != nil {
		p.CreationTimestamp = *p.Status.StartTime
	}
	if n.IPs == nil {
		return
	}
	ips := n.IPs()
	if len(ips) == 0 {
		return
	}
	p.Status.HostIP = ips[0]
	p.Status.HostIPs = nil
	for _, ip := range ips {
		p.Status.HostIPs = append(p.Status.HostIPs, corev1.HostIP{IP: ip})
	}
	if p.Spec.HostNetwork {
		p.Status.PodIP = ips[0]
		p.Status.PodIPs = podIPs(ips)
	}
}
