package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeExec answers exec actions with the exit code set for the command's
// first word (0 unless set), and records each call in the transcript as
// "exec uid/container word".
type fakeExec struct {
	log *transcript

	mu    sync.Mutex
	codes map[string]int
}

func newFakeExec(log *transcript) *fakeExec {
	return &fakeExec{log: log, codes: make(map[string]int)}
}

func (e *fakeExec) Exec(_ context.Context, uid types.UID, container string, cmd []string, _ time.Duration) (int, []byte, error) {
	e.log.add("exec %s/%s %s", uid, container, cmd[0])
	e.mu.Lock()
	defer e.mu.Unlock()
	code := e.codes[cmd[0]]
	return code, fmt.Appendf(nil, "%s says %d", cmd[0], code), nil
}

func (e *fakeExec) set(word string, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.codes[word] = code
}

func execProbe(word string, mods ...func(*corev1.Probe)) *corev1.Probe {
	p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{word}}}, PeriodSeconds: 1}
	for _, m := range mods {
		m(p)
	}
	return p
}

// tick steps the clock a second at a time, so that probes with
// periodSeconds 1 run, until cond holds.
func (h *harness) tick(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		h.clock.Step(time.Second)
		select {
		case <-h.turned:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s\nruntime: %q\ncalls: %q", what, h.rt.state(), h.log.get())
		}
	}
}

func (h *harness) condition(key string, t corev1.PodConditionType) corev1.PodCondition {
	p, _ := h.pod(key)
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func (h *harness) calledWith(prefix string) int {
	n := 0
	for _, c := range h.log.get() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func TestReadinessProbeFlipsReady(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	exec := h.exec.(*fakeExec)
	exec.set("ready?", 1)
	h.start()
	pod := testPod("web", "web-1", func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe = execProbe("ready?") })
	h.c.Update(snapshot(pod))
	h.waitStarted("default/web", "web-1", "web", 0)

	h.tick("the readiness probe to run", func() bool { return h.calledWith("exec web-1/web ready?") >= 2 })
	cs, _ := h.containerStatus("default/web", "web")
	if cs.Ready || !*cs.Started {
		t.Fatalf("container failing its readiness probe: ready %v started %v, want not ready, started", cs.Ready, *cs.Started)
	}
	notReady := h.condition("default/web", corev1.PodReady)
	if notReady.Status != corev1.ConditionFalse || notReady.Message != "containers with unready status: [web]" {
		t.Fatalf("Ready condition = %+v, want False for web", notReady)
	}

	exec.set("ready?", 0)
	h.tick("Ready", func() bool { return h.condition("default/web", corev1.PodReady).Status == corev1.ConditionTrue })
	ready := h.condition("default/web", corev1.PodReady)
	if !ready.LastTransitionTime.After(notReady.LastTransitionTime.Time) {
		t.Errorf("Ready's lastTransitionTime %s did not move on from %s", ready.LastTransitionTime, notReady.LastTransitionTime)
	}
	if c := h.condition("default/web", corev1.ContainersReady); c.Status != corev1.ConditionTrue {
		t.Errorf("ContainersReady = %+v, want True", c)
	}

	// Three failures in a row (the default threshold) make it unready again.
	exec.set("ready?", 1)
	from := h.calledWith("exec web-1/web ready?")
	h.tick("not Ready", func() bool { return h.condition("default/web", corev1.PodReady).Status == corev1.ConditionFalse })
	if n := h.calledWith("exec web-1/web ready?") - from; n < 3 {
		t.Errorf("unready after %d failed probes, want 3", n)
	}
	if got := h.calledWith("stop "); got != 0 {
		t.Errorf("a readiness failure stopped a container %d times", got)
	}
}

func TestLivenessFailureRestartsContainer(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	exec := h.exec.(*fakeExec)
	exec.set("alive?", 1)
	h.start()
	grace := int64(7)
	pod := testPod("web", "web-1", func(p *corev1.Pod) {
		p.Spec.Containers[0].LivenessProbe = execProbe("alive?", func(p *corev1.Probe) {
			p.FailureThreshold = 2
			p.TerminationGracePeriodSeconds = &grace
		})
	})
	h.c.Update(snapshot(pod))
	h.waitStarted("default/web", "web-1", "web", 0)
	h.tick("the liveness kill", func() bool { return h.calledWith("stop web-1/web 7s") == 1 })
	exec.set("alive?", 0)
	h.waitStarted("default/web", "web-1", "web", 1)
	cs, _ := h.containerStatus("default/web", "web")
	if term := cs.LastTerminationState.Terminated; term == nil || term.ExitCode != 143 {
		t.Errorf("last termination = %+v, want the kill's", term)
	}
	// The new attempt has a probe of its own, which now passes.
	h.tick("the new attempt's probe", func() bool { return h.calledWith("exec web-1/web alive?") >= 5 })
	if got := h.calledWith("stop "); got != 1 {
		t.Errorf("stopped %d times, want once", got)
	}
}

func TestLivenessKillRestartsUnderOnFailureWhateverTheExit(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	h.exec.(*fakeExec).set("alive?", 1)
	// The container exits 0 when told to stop: kubelet restarts it all the same.
	h.rt.stopExit = map[string]int{"web": 0}
	h.start()
	pod := testPod("web", "web-1", withPolicy(corev1.RestartPolicyOnFailure), func(p *corev1.Pod) {
		p.Spec.Containers[0].LivenessProbe = execProbe("alive?", func(p *corev1.Probe) { p.FailureThreshold = 1 })
	})
	h.c.Update(snapshot(pod))
	h.tick("the liveness kill", func() bool { return h.calledWith("stop web-1/web") >= 1 })
	// The new attempt fails its probe too: that it started is what counts.
	h.tick("the restart", func() bool { return h.calledWith("start web-1/web/1") == 1 })
}

func TestStartupProbeHoldsOffLivenessAndReadiness(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	exec := h.exec.(*fakeExec)
	exec.set("started?", 1)
	h.start()
	pod := testPod("web", "web-1", func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.StartupProbe = execProbe("started?", func(p *corev1.Probe) { p.FailureThreshold = 100 })
		c.LivenessProbe = execProbe("alive?")
		c.ReadinessProbe = execProbe("ready?")
	})
	h.c.Update(snapshot(pod))
	h.waitStarted("default/web", "web-1", "web", 0)
	h.tick("startup probes", func() bool { return h.calledWith("exec web-1/web started?") >= 3 })
	if n := h.calledWith("exec web-1/web alive?") + h.calledWith("exec web-1/web ready?"); n != 0 {
		t.Fatalf("%d liveness or readiness probes ran before the startup probe passed", n)
	}
	cs, _ := h.containerStatus("default/web", "web")
	if *cs.Started || cs.Ready {
		t.Fatalf("started %v ready %v before the startup probe passed, want neither", *cs.Started, cs.Ready)
	}
	exec.set("started?", 0)
	h.tick("ready", func() bool {
		cs, _ := h.containerStatus("default/web", "web")
		return *cs.Started && cs.Ready
	})
	h.tick("liveness probes", func() bool { return h.calledWith("exec web-1/web alive?") >= 1 })
	n := h.calledWith("exec web-1/web started?")
	h.tick("more liveness probes", func() bool { return h.calledWith("exec web-1/web alive?") >= 3 })
	if more := h.calledWith("exec web-1/web started?"); more != n {
		t.Errorf("the startup probe ran %d more times after it passed", more-n)
	}
}

// TestHangingProbeHoldsUpNothing gives one container a probe whose target
// never answers: the other container's probe keeps running and the pod
// worker keeps publishing.
func TestHangingProbeHoldsUpNothing(t *testing.T) {
	h := newHarness(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	h.exec = &hangingExec{fakeExec: newFakeExec(h.log), word: "hang", release: hang}
	h.start()
	pod := testPod("web", "web-1", withContainers("stuck", "fine"), func(p *corev1.Pod) {
		p.Spec.Containers[0].ReadinessProbe = execProbe("hang", func(p *corev1.Probe) { p.TimeoutSeconds = 3600 })
		p.Spec.Containers[1].ReadinessProbe = execProbe("ready?")
	})
	h.c.Update(snapshot(pod))
	h.tick("the other probe to run on", func() bool { return h.calledWith("exec web-1/fine ready?") >= 5 })
	cs, _ := h.containerStatus("default/web", "fine")
	if !cs.Ready {
		t.Error("the container beside a hanging probe is not ready")
	}
}

type hangingExec struct {
	*fakeExec
	word    string
	release chan struct{}
}

func (e *hangingExec) Exec(ctx context.Context, uid types.UID, container string, cmd []string, timeout time.Duration) (int, []byte, error) {
	if cmd[0] == e.word {
		e.log.add("exec %s/%s %s", uid, container, cmd[0])
		select {
		case <-e.release:
		case <-ctx.Done():
		}
		return 0, nil, ctx.Err()
	}
	return e.fakeExec.Exec(ctx, uid, container, cmd, timeout)
}

func TestPreStopRunsBeforeStop(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	h.start()
	pod := testPod("web", "web-1", withGrace(20), func(p *corev1.Pod) {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"drain"}}}}
	})
	h.c.Update(snapshot(pod))
	h.waitStarted("default/web", "web-1", "web", 0)
	from := len(h.log.get())
	h.c.Update(snapshot())
	h.eventually("the teardown", func() bool { return h.calledWith("teardown web-1") == 1 })
	h.checkCalls(from, "exec web-1/web drain", "stop web-1/web 20s", "remove web-1 20s", "teardown web-1")
}

func TestFailingPostStartKillsContainer(t *testing.T) {
	h := newHarness(t)
	h.exec = newFakeExec(h.log)
	h.exec.(*fakeExec).set("setup", 2)
	h.start()
	pod := testPod("web", "web-1", func(p *corev1.Pod) {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"setup"}}}}
	})
	h.c.Update(snapshot(pod))
	cs := h.waitWaiting("default/web", "web", "PostStartHookError", 0)
	if !strings.Contains(cs.State.Waiting.Message, "setup says 2") {
		t.Errorf("waiting message %q does not carry the hook's output", cs.State.Waiting.Message)
	}
	calls := h.log.get()
	start, exec, stop := slices.Index(calls, "start web-1/web/0"), slices.Index(calls, "exec web-1/web setup"), slices.Index(calls, "stop web-1/web 30s")
	if start < 0 || exec < start || stop < exec {
		t.Errorf("calls %q: want start, the hook, then the kill", calls)
	}
	h.exec.(*fakeExec).set("setup", 0)
	h.converge(func() bool {
		cs, _ := h.containerStatus("default/web", "web")
		return cs.State.Running != nil && cs.RestartCount == 1
	})
}

// TestHangingPostStartLetsPodGo removes a pod whose postStart hook never
// returns: the hook is abandoned, and the pod removed.
func TestHangingPostStartLetsPodGo(t *testing.T) {
	h := newHarness(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	h.exec = &hangingExec{fakeExec: newFakeExec(h.log), word: "hang", release: hang}
	h.start()
	pod := testPod("web", "web-1", func(p *corev1.Pod) {
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"hang"}}}}
	})
	h.c.Update(snapshot(pod))
	// The worker is held up in the hook and publishes nothing: poll.
	for deadline := time.Now().Add(10 * time.Second); h.calledWith("exec web-1/web hang") == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hook never ran: %q", h.log.get())
		}
	}
	h.c.Update(snapshot())
	h.eventually("the teardown", func() bool { return h.calledWith("teardown web-1") == 1 })
}
