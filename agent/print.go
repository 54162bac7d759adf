package agent

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// PrintPods writes pods as `kubectl get pods -A` does:
// NAMESPACE NAME READY STATUS RESTARTS AGE IP.
func PrintPods(w io.Writer, pods []corev1.Pod, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tAGE\tIP")
	for i := range pods {
		p := &pods[i]
		ip := p.Status.PodIP
		if ip == "" {
			ip = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, readyColumn(p),
			statusColumn(p), restartsColumn(p, now), age(p, now), ip)
	}
	return tw.Flush()
}

// readyColumn counts the app containers and the sidecars, as kubectl does.
func readyColumn(p *corev1.Pod) string {
	ready, total := 0, len(p.Spec.Containers)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
	}
	for _, c := range p.Spec.InitContainers {
		if isSidecar(&c) {
			total++
		}
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.Ready && isSidecar(initContainer(p, cs.Name)) {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, total)
}

// statusColumn follows kubectl's rules: the most telling container reason
// wins over the pod phase, and a pod being deleted is Terminating.
func statusColumn(p *corev1.Pod) string {
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	initReason, initializing := initColumn(p)
	if initializing {
		reason = initReason
	}
	running := false
	for i := len(p.Status.ContainerStatuses) - 1; !initializing && i >= 0; i-- {
		st := p.Status.ContainerStatuses[i].State
		switch {
		case st.Waiting != nil && st.Waiting.Reason != "":
			reason = st.Waiting.Reason
		case st.Terminated != nil && st.Terminated.Reason != "":
			reason = st.Terminated.Reason
		case st.Terminated != nil && st.Terminated.Signal != 0:
			reason = fmt.Sprintf("Signal:%d", st.Terminated.Signal)
		case st.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", st.Terminated.ExitCode)
		case st.Running != nil && p.Status.ContainerStatuses[i].Ready:
			running = true
		}
	}
	if reason == "Completed" && running {
		reason = "NotReady"
		if podReady(p) {
			reason = "Running"
		}
	}
	// An eviction says more than the ends of the containers it killed,
	// which kubectl would show.
	if p.Status.Reason == "Evicted" {
		reason = p.Status.Reason
	}
	if p.DeletionTimestamp != nil {
		reason = "Terminating"
	}
	if reason == "" {
		reason = "Unknown"
	}
	return reason
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func restartsColumn(p *corev1.Pod, now time.Time) string {
	var restarts int32
	var last time.Time
	_, initializing := initColumn(p)
	for _, cs := range p.Status.InitContainerStatuses {
		if initializing || isSidecar(initContainer(p, cs.Name)) {
			restarts += cs.RestartCount
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		restarts += cs.RestartCount
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.Time.After(last) {
			last = t.FinishedAt.Time
		}
	}
	if restarts > 0 && !last.IsZero() {
		return fmt.Sprintf("%d (%s ago)", restarts, duration.HumanDuration(now.Sub(last)))
	}
	return fmt.Sprint(restarts)
}

func age(p *corev1.Pod, now time.Time) string {
	t := p.CreationTimestamp.Time
	if t.IsZero() && p.Status.StartTime != nil {
		t = p.Status.StartTime.Time
	}
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// initColumn returns the STATUS of a pod that is initializing, as kubectl
// shows it: Init:N/M while init container N runs or waits to, Init:REASON
// when it fails or backs off. Started sidecars are skipped; a pod whose
// Initialized condition is true is not initializing.
func initColumn(p *corev1.Pod) (reason string, initializing bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodInitialized && c.Status == corev1.ConditionTrue {
			return "", false
		}
	}
	for i, cs := range p.Status.InitContainerStatuses {
		st := cs.State
		switch {
		case isSidecar(initContainer(p, cs.Name)) && cs.Started != nil && *cs.Started:
			continue
		case st.Terminated != nil && st.Terminated.ExitCode == 0:
			continue
		case st.Terminated != nil && st.Terminated.Reason != "":
			return "Init:" + st.Terminated.Reason, true
		case st.Terminated != nil && st.Terminated.Signal != 0:
			return fmt.Sprintf("Init:Signal:%d", st.Terminated.Signal), true
		case st.Terminated != nil:
			return fmt.Sprintf("Init:ExitCode:%d", st.Terminated.ExitCode), true
		case st.Waiting != nil && st.Waiting.Reason != "" && st.Waiting.Reason != "PodInitializing":
			return "Init:" + st.Waiting.Reason, true
		default:
			return fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers)), true
		}
	}
	return "", false
}

func initContainer(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == name {
			return &p.Spec.InitContainers[i]
		}
	}
	return nil
}

func isSidecar(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
