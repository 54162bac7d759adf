package reconcile

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func withInit(names ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for _, n := range names {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "busybox"})
		}
	}
}

// withSidecar adds a sidecar, an init container that restarts always.
func withSidecar(name string, mods ...func(*corev1.Container)) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		always := corev1.ContainerRestartPolicyAlways
		c := corev1.Container{Name: name, Image: "busybox", RestartPolicy: &always}
		for _, m := range mods {
			m(&c)
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

// starts returns the container starts in the transcript, in order.
func (h *harness) starts() []string {
	var out []string
	for _, c := range h.log.get() {
		if name, ok := strings.CutPrefix(c, "start "); ok {
			out = append(out, name)
		}
	}
	return out
}

func (h *harness) checkStarts(want ...string) {
	h.t.Helper()
	if diff := cmp.Diff(want, h.starts()); diff != "" {
		h.t.Errorf("starts (-want +got):\n%s", diff)
	}
}

func TestInitContainersRunInOrderBeforeApps(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withInit("one", "two"))))
	h.waitState("web-1: one/0 Running")
	p, _ := h.pod("default/web")
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase while initializing = %s, want Pending", p.Status.Phase)
	}
	if c := h.condition("default/web", corev1.PodInitialized); c.Status != corev1.ConditionFalse || c.Message != "containers with incomplete status: [one two]" {
		t.Errorf("Initialized = %+v, want False for one and two", c)
	}
	if cs, _ := h.containerStatus("default/web", "web"); cs.State.Waiting == nil || cs.State.Waiting.Reason != "PodInitializing" {
		t.Errorf("app container while initializing: %+v, want waiting PodInitializing", cs.State)
	}
	h.rt.exit("web-1", "one", 0)
	h.waitState("web-1: one/0 Exited two/0 Running")
	h.rt.exit("web-1", "two", 0)
	h.waitState("web-1: one/0 Exited two/0 Exited web/0 Running")
	h.waitPhase("default/web", corev1.PodRunning)
	h.checkStarts("web-1/one/0", "web-1/two/0", "web-1/web/0")
	if c := h.condition("default/web", corev1.PodInitialized); c.Status != corev1.ConditionTrue {
		t.Errorf("Initialized = %+v, want True", c)
	}
	p, _ = h.pod("default/web")
	if got := p.Status.InitContainerStatuses; len(got) != 2 || got[1].State.Terminated == nil || got[1].State.Terminated.Reason != "Completed" {
		t.Errorf("init container statuses = %+v, want two completed", got)
	}

	// The app exiting restarts the app only: the pod stays initialized.
	h.rt.exit("web-1", "web", 1)
	h.waitStarted("default/web", "web-1", "web", 1)
	h.checkStarts("web-1/one/0", "web-1/two/0", "web-1/web/0", "web-1/web/1")
}

func TestFailedInitContainerRetriesWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withInit("one"))))
	h.waitState("web-1: one/0 Running")
	h.rt.exit("web-1", "one", 1)
	h.waitStarted("default/web", "web-1", "one", 1)
	h.rt.exit("web-1", "one", 1)
	h.waitWaiting("default/web", "one", "CrashLoopBackOff", 1)
	if p, _ := h.pod("default/web"); p.Status.Phase != corev1.PodPending {
		t.Errorf("phase = %s, want Pending", p.Status.Phase)
	}
	h.converge(func() bool { return slices.Contains(h.starts(), "web-1/one/2") })
	h.rt.exit("web-1", "one", 0)
	h.waitState("web-1: one/2 Exited web/0 Running")
}

func TestFailedInitContainerFailsPodThatNeverRestarts(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withPolicy(corev1.RestartPolicyNever), withInit("one", "two"))))
	h.waitState("web-1: one/0 Running")
	h.rt.exit("web-1", "one", 3)
	h.waitPhase("default/web", corev1.PodFailed)
	h.settle()
	h.checkStarts("web-1/one/0")
}

func TestSidecarRunsBesideAppsAndRestarts(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withPolicy(corev1.RestartPolicyNever), withSidecar("proxy"), withInit("setup"))))
	h.waitState("web-1: proxy/0 Running setup/0 Running")
	h.rt.exit("web-1", "setup", 0)
	h.waitState("web-1: proxy/0 Running setup/0 Exited web/0 Running")
	h.checkStarts("web-1/proxy/0", "web-1/setup/0", "web-1/web/0")

	// A sidecar restarts whatever the pod's policy.
	h.rt.exit("web-1", "proxy", 0)
	h.converge(func() bool { return slices.Contains(h.starts(), "web-1/proxy/1") })
	h.waitStarted("default/web", "web-1", "proxy", 1)
	if p, _ := h.pod("default/web"); len(p.Status.InitContainerStatuses) != 2 || !p.Status.InitContainerStatuses[0].Ready {
		t.Errorf("sidecar status = %+v, want ready", p.Status.InitContainerStatuses)
	}
}

func TestSidecarStartupProbeGatesNextInit(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	exec := h.exec.(*fakeExec)
	exec.set("up?", 1)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1",
		withSidecar("proxy", func(c *corev1.Container) {
			c.StartupProbe = execProbe("up?", func(p *corev1.Probe) { p.FailureThreshold = 100 })
		}),
		withInit("setup"))))
	h.tick("startup probes", func() bool { return h.calledWith("exec web-1/proxy up?") >= 3 })
	h.checkStarts("web-1/proxy/0")
	exec.set("up?", 0)
	h.tick("the init container", func() bool { return slices.Contains(h.starts(), "web-1/setup/0") })
}

func TestSidecarsStopAfterAppsInReverseOrder(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withGrace(10), withSidecar("logs"), withSidecar("proxy"), withContainers("a", "b"))))
	h.waitState("web-1: logs/0 Running proxy/0 Running a/0 Running b/0 Running")
	h.waitStarted("default/web", "web-1", "b", 0)
	from := len(h.log.get())
	h.c.Update(snapshot())
	h.eventually("the teardown", func() bool { return h.calledWith("teardown web-1") == 1 })
	calls := h.callsSince(from)
	// The app containers stop together, in any order.
	if !slices.Contains(calls[:2], "stop web-1/a 10s") || !slices.Contains(calls[:2], "stop web-1/b 10s") {
		t.Errorf("calls %q: the app containers do not stop first", calls)
	}
	if diff := cmp.Diff([]string{"stop web-1/proxy 10s", "stop web-1/logs 10s", "remove web-1 10s", "teardown web-1"}, calls[2:]); diff != "" {
		t.Errorf("after the apps (-want +got):\n%s", diff)
	}
}

func TestSidecarsStopWhenPodCompletes(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("job", "job-1", withPolicy(corev1.RestartPolicyOnFailure), withSidecar("logs"), withSidecar("proxy"))))
	h.waitState("job-1: logs/0 Running proxy/0 Running web/0 Running")
	h.waitStarted("default/job", "job-1", "web", 0)
	from := len(h.log.get())
	h.rt.exit("job-1", "web", 0)
	h.waitState("job-1: logs/0 Exited proxy/0 Exited web/0 Exited")
	h.waitPhase("default/job", corev1.PodSucceeded)
	h.settle()
	h.checkCalls(from, "stop job-1/proxy 30s", "stop job-1/logs 30s")
	p, _ := h.pod("default/job")
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.State.Terminated == nil {
			t.Errorf("sidecar %s of a completed pod: %+v, want terminated", cs.Name, cs.State)
		}
	}
}

// settle lets back-offs expire and the pod's worker sync a few times, so
// that a start that should not happen would have.
func (h *harness) settle() {
	for range 5 {
		h.clock.Step(time.Minute)
		select {
		case <-h.turned:
		case <-time.After(20 * time.Millisecond):
		}
	}
}
