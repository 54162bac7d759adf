package reconcile

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podView is a worker's model of one sandbox of its key: the runtime's
// latest observation merged with what the worker's own calls returned, so a
// list that started before a call cannot undo its effect.
type podView struct {
	pod       *corev1.Pod
	ready     bool
	netnsPath string
	ips       []string
	createdAt time.Time
	// networked is set once Network.Setup succeeded in this agent process.
	networked bool
	// createdHere is set when this worker created the sandbox (as opposed
	// to adopting it), so its start latency is worth recording.
	createdHere  bool
	startTimed   bool
	deletingFrom time.Time
	// touched is the list sequence number current when the worker last
	// changed this sandbox; only lists started later may report it gone.
	touched    uint64
	containers map[string]*containerView
	// diskCheckAt is when to measure the pod's local storage next.
	diskCheckAt time.Time
}

func newPodView(s *PodState) *podView {
	v := &podView{containers: make(map[string]*containerView)}
	v.update(s)
	return v
}

// update merges a runtime observation of the sandbox into v.
func (v *podView) update(s *PodState) {
	v.pod = s.Pod
	v.ready = s.Ready
	v.netnsPath = s.NetNSPath
	v.createdAt = s.CreatedAt
	if !v.networked && len(s.PodIPs) > 0 {
		v.ips = s.PodIPs
	}
	for _, c := range s.Containers {
		v.container(c.Name).record(c, true)
	}
}

// container returns the view of the named container, creating it.
func (v *podView) container(name string) *containerView {
	cv, ok := v.containers[name]
	if !ok {
		cv = &containerView{}
		v.containers[name] = cv
	}
	return cv
}

// containerView holds the two latest attempts of one container and the
// last failure to start the next one.
type containerView struct {
	latest   *ContainerState
	previous *ContainerState
	failure  *startFailure
	// probeKilled is the attempt a liveness or startup probe killed, if
	// any.
	probeKilled *int
}

// startFailure is a StartContainer error, shown as the container's Waiting
// reason until a start succeeds.
type startFailure struct {
	at      time.Time
	reason  string
	message string
	// backoffKey is the back-off the failure counts against: the image's
	// for a failed pull, "" for the container's own.
	backoffKey string
}

// record merges one attempt into the view. Attempts only move forward, and
// within one attempt phases only move forward (Created, Running, Exited), so
// merging observations in any order converges. On a tie the runtime's copy
// wins: it carries the container ID, PID and exact times.
func (cv *containerView) record(s ContainerState, fromRuntime bool) {
	switch {
	case cv.latest == nil || s.Attempt > cv.latest.Attempt:
		cv.previous = nil
		if cv.latest != nil && cv.latest.Attempt == s.Attempt-1 {
			cv.previous = cv.latest
		}
		cv.latest = &s
	case s.Attempt == cv.latest.Attempt:
		if newer(s, *cv.latest, fromRuntime) {
			cv.latest = &s
		}
	case s.Attempt == cv.latest.Attempt-1:
		if cv.previous == nil || newer(s, *cv.previous, fromRuntime) {
			cv.previous = &s
		}
	}
}

func newer(s, old ContainerState, fromRuntime bool) bool {
	if r, o := phaseRank(s.Phase), phaseRank(old.Phase); r != o {
		return r > o
	}
	return fromRuntime
}

// phaseOrder is the order in which an attempt goes through its phases.
var phaseOrder = []ContainerPhase{ContainerCreated, ContainerRunning, ContainerExited}

func phaseRank(p ContainerPhase) int { return slices.Index(phaseOrder, p) }
