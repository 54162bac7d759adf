package reconcile

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Init containers and sidecars, as kubelet's computePodActions orders them.

// isSidecar reports whether c is a sidecar: an init container with
// restartPolicy Always, which keeps running beside the app containers.
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func isInit(pod *corev1.Pod, name string) (c *corev1.Container, ok bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	return nil, false
}

// restartPolicy returns the policy a container restarts under: a sidecar
// always, an init container on failure unless the pod never restarts, an
// app container as the pod says.
func restartPolicy(pod *corev1.Pod, name string) corev1.RestartPolicy {
	c, ok := isInit(pod, name)
	switch {
	case !ok:
		return pod.Spec.RestartPolicy
	case isSidecar(c):
		return corev1.RestartPolicyAlways
	case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
		return corev1.RestartPolicyNever
	default:
		return corev1.RestartPolicyOnFailure
	}
}

// startedFunc reports whether a running container counts as started.
type startedFunc func(c *corev1.Container, attempt int) bool

// initState is where a pod stands in its initialization.
type initState struct {
	// next are the containers that decide may start now, in order.
	next []*corev1.Container
	// done is set once every init container completed and every sidecar
	// started: the app containers may run.
	done bool
	// failed is set when an init container failed and the pod never
	// restarts: the pod has failed.
	failed bool
	// incomplete names the init containers that have not completed, or
	// for sidecars started.
	incomplete []string
}

// initialize walks the init containers in order, as kubelet does: a
// sidecar is started and waited for until it runs and its startup probe
// passed, then stays among the containers to keep running; a regular init
// container runs to completion, one at a time. Once an app container has
// run, the pod has initialized, and its regular init containers never run
// again.
func initialize(pod *corev1.Pod, views map[string]*containerView, started startedFunc) initState {
	var st initState
	appsRan := false
	for _, c := range pod.Spec.Containers {
		if cv := views[c.Name]; cv != nil && cv.latest != nil {
			appsRan = true
		}
	}
	blocked := false
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		var latest *ContainerState
		if cv := views[c.Name]; cv != nil {
			latest = cv.latest
		}
		running := latest != nil && latest.Phase == ContainerRunning
		switch {
		case isSidecar(c):
			if !blocked {
				st.next = append(st.next, c)
			}
			if !running || !started(c, latest.Attempt) {
				st.incomplete = append(st.incomplete, c.Name)
				blocked = blocked || !appsRan
			}
		case appsRan || (latest != nil && latest.Phase == ContainerExited && latest.ExitCode == 0):
		default:
			st.incomplete = append(st.incomplete, c.Name)
			if blocked {
				continue
			}
			blocked = true
			if latest != nil && latest.Phase == ContainerExited && restartPolicy(pod, c.Name) == corev1.RestartPolicyNever {
				st.failed = true
				continue
			}
			st.next = append(st.next, c)
		}
	}
	st.done = !blocked
	return st
}

// startable returns the containers whose start decide may decide now:
// the init containers initialize lets run, then, once the pod has
// initialized, the app containers.
func (w *worker) startable(v *podView) []corev1.Container {
	if appsDone(v.pod, v.containers) {
		return nil
	}
	st := initialize(v.pod, v.containers, w.startedFunc(v))
	var out []corev1.Container
	for _, c := range st.next {
		out = append(out, *c)
	}
	if st.done {
		out = append(out, v.pod.Spec.Containers...)
	}
	return out
}

func (w *worker) startedFunc(v *podView) startedFunc {
	return func(c *corev1.Container, attempt int) bool {
		started, _ := w.probes.status(v.pod.UID, c, attempt)
		return started
	}
}

// initStatus returns where the pod stands in its initialization, for its
// status.
func initStatus(in statusInput) initState {
	views := map[string]*containerView{}
	if in.view != nil {
		views = in.view.containers
	}
	started := func(c *corev1.Container, attempt int) bool { return true }
	if in.probes != nil {
		started = func(c *corev1.Container, attempt int) bool {
			s, _ := in.probes.status(in.pod.UID, c, attempt)
			return s
		}
	}
	return initialize(in.pod, views, started)
}

// initializedCondition is the pod's Initialized condition: true once
// every init container completed and every sidecar started.
func initializedCondition(in statusInput) corev1.PodCondition {
	st := initStatus(in)
	if st.done {
		return corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	}
	return corev1.PodCondition{
		Type: corev1.PodInitialized, Status: corev1.ConditionFalse, Reason: "ContainersNotInitialized",
		Message: fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(st.incomplete, " ")),
	}
}

// appsDone reports whether every app container exited for good: the pod
// has completed, and its sidecars are to stop, not restart.
func appsDone(pod *corev1.Pod, views map[string]*containerView) bool {
	for _, c := range pod.Spec.Containers {
		cv := views[c.Name]
		if cv == nil || cv.latest == nil || cv.latest.Phase != ContainerExited || restartAfter(pod, c.Name, cv) {
			return false
		}
	}
	return true
}

// stopSidecars stops the sidecars of a pod whose app containers are done,
// in reverse order, as kubelet does when a pod completes.
func (w *worker) stopSidecars(ctx context.Context, v *podView) {
	if !appsDone(v.pod, v.containers) {
		return
	}
	for i := len(v.pod.Spec.InitContainers) - 1; i >= 0; i-- {
		c := &v.pod.Spec.InitContainers[i]
		if isSidecar(c) && w.running(v, c.Name) {
			w.log.Info("stopping sidecar of a completed pod", "container", c.Name)
			if err := w.killContainer(ctx, v, c, gracePeriod(v.pod)); err != nil {
				// RemovePod stops it again.
				w.log.Warn("stop container", "container", c.Name, "err", err)
			} else {
				// Stopped: until the next list says how it exited, a
				// sync must not stop it again.
				cv := v.containers[c.Name]
				s := *cv.latest
				s.Phase, s.FinishedAt = ContainerExited, w.c.clock.Now()
				cv.record(s, false)
			}
			w.c.requestRelist(w.key)
		}
	}
}

// completedSidecar reports whether c is a sidecar that exited after the
// pod's app containers were done: it stays terminated.
func completedSidecar(in statusInput, c *corev1.Container, cv *containerView) bool {
	if in.view == nil || cv.latest == nil || cv.latest.Phase != ContainerExited {
		return false
	}
	if _, ok := isInit(in.pod, c.Name); !ok || !isSidecar(c) {
		return false
	}
	return appsDone(in.pod, in.view.containers)
}
