package reconcile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/manifests"
)

func TestCreate(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1")))

	p := h.waitPhase("default/web", corev1.PodRunning)
	h.checkCalls(0, "create web-1", "setup web-1 /run/netns/web-1", "start web-1/web/0")
	if p.Status.PodIP != "10.88.0.1" {
		t.Errorf("podIP = %q, want 10.88.0.1", p.Status.PodIP)
	}
}

func TestNothingHappensBeforeFirstSnapshot(t *testing.T) {
	h := newHarness(t)
	web := testPod("web", "web-1")
	h.rt.add(runningState(web, ContainerState{Name: "web", Phase: ContainerRunning}))
	h.start()
	h.clock.Step(time.Hour) // a resync before the first snapshot

	h.c.Update(snapshot(web))
	h.waitIP("default/web", "10.88.0.1")
	h.checkCalls(0, "setup web-1 /run/netns/web-1")
}

func TestEditRemovesOldPodWithItsGraceFirst(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withGrace(5))))
	h.waitPhase("default/web", corev1.PodRunning)
	n := len(h.log.get())

	h.c.Update(snapshot(testPod("web", "web-2", withGrace(60))))
	h.waitState("web-2: web/0 Running")
	h.checkCalls(n,
		"remove web-1 5s", "teardown web-1",
		"create web-2", "setup web-2 /run/netns/web-2", "start web-2/web/0")
}

func TestEditShowsOldPodTerminating(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1")))
	h.waitPhase("default/web", corev1.PodRunning)
	release := h.rt.block("web-1")
	defer release()

	h.c.Update(snapshot(testPod("web", "web-2")))
	h.eventually("old pod terminating", func() bool {
		pods := h.c.Pods()
		return len(pods) == 2 && pods[0].UID == "web-1" && pods[0].DeletionTimestamp != nil &&
			pods[1].UID == "web-2" && pods[1].Status.Phase == corev1.PodPending
	})
}

// TestRefusedDirectoryKeepsRunningPods starts the controller while the
// manifest directory is refused (an operator's chmod slip): the pods
// running from it are kept, and go once the directory reads empty.
func TestRefusedDirectoryKeepsRunningPods(t *testing.T) {
	h := newHarness(t)
	web := testPod("web", "web-1")
	h.rt.add(runningState(web, ContainerState{Name: "web", Phase: ContainerRunning}))
	other := testPod("other", "other-1")
	other.Pod.Annotations[manifests.AnnotationManifest] = "/srv/elsewhere/other.yaml"
	h.rt.add(runningState(other, ContainerState{Name: "web", Phase: ContainerRunning}))
	h.start()
	h.c.Update(manifests.Snapshot{
		Errors:     []manifests.FileError{{File: "/etc/peapod", Err: errors.New("mode 0777 lets other users write it")}},
		RefusedDir: "/etc/peapod",
	})
	// other's file is not in the refused directory: it goes.
	h.waitState("web-1: web/0 Running")
	h.waitPhase("default/web", corev1.PodRunning)

	h.c.Update(manifests.Snapshot{})
	h.waitState()
}

func TestDelete(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withGrace(7)), testPod("db", "db-1")))
	h.waitState("db-1: web/0 Running", "web-1: web/0 Running")
	n := len(h.log.get())

	h.c.Update(snapshot(testPod("db", "db-1")))
	h.waitState("db-1: web/0 Running")
	h.checkCalls(n, "remove web-1 7s", "teardown web-1")
	h.eventually("web gone from Pods", func() bool { return len(h.c.Pods()) == 1 })
}

func TestBrokenFileKeepsRunningPod(t *testing.T) {
	h := newHarness(t)
	web := testPod("web", "web-1")
	h.rt.add(runningState(web, ContainerState{Name: "web", Phase: ContainerRunning}))
	h.start()
	broken := manifests.Snapshot{Errors: []manifests.FileError{{File: web.File, Err: errors.New("bad yaml")}}}
	h.c.Update(broken)
	h.waitPhase("default/web", corev1.PodRunning)

	// The kept pod is still restarted per its policy.
	h.rt.exit("web-1", "web", 1)
	h.waitState("web-1: web/1 Running")

	// The file is deleted: the pod goes.
	h.c.Update(manifests.Snapshot{})
	h.waitState()
	h.checkCalls(0, "setup web-1 /run/netns/web-1", "start web-1/web/1", "remove web-1 30s", "teardown web-1")
}

func TestAdoptsRunningPods(t *testing.T) {
	h := newHarness(t)
	web := testPod("web", "web-1", withContainers("a", "b"))
	h.rt.add(runningState(web,
		ContainerState{Name: "a", Attempt: 0, Phase: ContainerExited, ExitCode: 1, FinishedAt: epoch.Add(-time.Minute)},
		ContainerState{Name: "a", Attempt: 1, Phase: ContainerRunning, StartedAt: epoch.Add(-time.Minute)},
		ContainerState{Name: "b", Attempt: 0, Phase: ContainerRunning, StartedAt: epoch.Add(-time.Hour)},
	))
	h.start()
	h.c.Update(snapshot(web))

	// Setup runs again after an agent restart and returns the same address.
	p := h.waitIP("default/web", "10.88.0.1")
	h.checkCalls(0, "setup web-1 /run/netns/web-1")
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase = %s, want Running", p.Status.Phase)
	}
	if got := p.Status.ContainerStatuses[0].RestartCount; got != 1 {
		t.Errorf("restartCount of a = %d, want 1", got)
	}
	if got := p.Status.StartTime.Time; !got.Equal(epoch.Add(-time.Hour)) {
		t.Errorf("startTime = %v, want the sandbox's creation", got)
	}
}

func TestRestartsContainerThatExitedWhileAgentWasDown(t *testing.T) {
	h := newHarness(t)
	web := testPod("web", "web-1")
	h.rt.add(runningState(web, ContainerState{
		Name: "web", Phase: ContainerExited, ExitCode: 3, Reason: "Error",
		StartedAt: epoch.Add(-time.Hour), FinishedAt: epoch.Add(-time.Minute),
	}))
	h.start()
	h.c.Update(snapshot(web))

	h.waitState("web-1: web/1 Running")
	var cs corev1.ContainerStatus
	h.eventually("status of attempt 1", func() bool {
		cs, _ = h.containerStatus("default/web", "web")
		return cs.State.Running != nil && cs.ContainerID == "peapod://web-1/web/1"
	})
	last := cs.LastTerminationState.Terminated
	if cs.RestartCount != 1 || last == nil || last.ExitCode != 3 || last.Reason != "Error" ||
		last.ContainerID != "peapod://web-1/web/0" {
		t.Errorf("status = %+v, want restartCount 1 and lastState exit code 3 of attempt 0", cs)
	}
}

func TestRestartPolicies(t *testing.T) {
	tests := []struct {
		policy    corev1.RestartPolicy
		exitCode  int
		restarted bool
		phase     corev1.PodPhase
	}{
		{corev1.RestartPolicyAlways, 0, true, corev1.PodRunning},
		{corev1.RestartPolicyAlways, 1, true, corev1.PodRunning},
		{corev1.RestartPolicyOnFailure, 0, false, corev1.PodSucceeded},
		{corev1.RestartPolicyOnFailure, 1, true, corev1.PodRunning},
		{corev1.RestartPolicyNever, 0, false, corev1.PodSucceeded},
		{corev1.RestartPolicyNever, 1, false, corev1.PodFailed},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.exitCode), func(t *testing.T) {
			h := newHarness(t)
			h.start()
			h.c.Update(snapshot(testPod("job", "job-1", withPolicy(tt.policy))))
			h.waitState("job-1: web/0 Running")

			h.rt.exit("job-1", "web", tt.exitCode)
			if tt.restarted {
				h.waitState("job-1: web/1 Running")
			} else {
				h.waitPhase("default/job", tt.phase)
				h.checkCalls(0, "create job-1", "setup job-1 /run/netns/job-1", "start job-1/web/0")
			}
			h.waitPhase("default/job", tt.phase)
		})
	}
}

// TestCrashLoopBackOff follows kubelet: the first restart is immediate and
// arms a 10 s back-off; every later exit waits the back-off, which doubles
// up to 5 min and is forgotten once the container ran 10 min.
func TestCrashLoopBackOff(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1")))
	h.waitStarted("default/web", "web-1", "web", 0)
	h.rt.exit("web-1", "web", 1)
	h.waitStarted("default/web", "web-1", "web", 1)

	attempt := 1
	for _, delay := range []time.Duration{10, 20, 40, 80, 160, 300, 300} {
		delay *= time.Second
		h.rt.exit("web-1", "web", 1)
		cs := h.waitWaiting("default/web", "web", "CrashLoopBackOff", attempt)
		want := fmt.Sprintf("back-off %s restarting failed container=web pod=web_default(web-1)", delay)
		if cs.State.Waiting.Message != want || cs.RestartCount != int32(attempt) {
			t.Fatalf("waiting = %q, restartCount %d; want %q, %d", cs.State.Waiting.Message, cs.RestartCount, want, attempt)
		}
		h.clock.Step(delay - time.Second)
		if got := h.rt.state(); got[0] != fmt.Sprintf("web-1: web/%d Exited", attempt) {
			t.Fatalf("restarted %s early: %q", time.Second, got)
		}
		h.clock.Step(time.Second)
		attempt++
		h.waitStarted("default/web", "web-1", "web", attempt)
	}

	h.clock.Step(10*time.Minute + time.Second)
	h.rt.exit("web-1", "web", 1)
	h.waitState(fmt.Sprintf("web-1: web/%d Running", attempt+1))
	h.rt.exit("web-1", "web", 1)
	cs := h.waitWaiting("default/web", "web", "CrashLoopBackOff", attempt+1)
	if want := "back-off 10s"; cs.State.Waiting.Message[:len(want)] != want {
		t.Errorf("after a long run: %q, want the back-off reset to 10s", cs.State.Waiting.Message)
	}
}

func TestStartErrors(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.rt.fail("start web-1/web", &StartError{Reason: "CreateContainerConfigError", Err: errors.New(`env "X": no such key`)})
	h.c.Update(snapshot(testPod("web", "web-1")))

	cs := h.waitWaiting("default/web", "web", "CreateContainerConfigError", 0)
	if cs.State.Waiting.Message != `env "X": no such key` {
		t.Errorf("message = %q", cs.State.Waiting.Message)
	}
	h.rt.fail("start web-1/web", errors.New("shim gone"))
	h.clock.Step(10 * time.Second)
	h.waitWaiting("default/web", "web", "RunContainerError", 0)

	// The second failure doubled the back-off.
	h.rt.fail("start web-1/web", nil)
	h.clock.Step(19 * time.Second)
	if got := h.rt.state(); got[0] != "web-1:" {
		t.Fatalf("retried early: %q", got)
	}
	h.clock.Step(time.Second)
	h.waitState("web-1: web/0 Running")
	h.checkCalls(3, "start web-1/web/0", "start web-1/web/0")
}

func TestListErrorsRetriedWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.rt.failList(errors.New("state dir unreadable"))
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1")))
	// The resync ticker and the retry timer.
	h.eventually("first list", func() bool { return h.lists() == 1 && h.clock.Waiters() == 2 })
	h.clock.Step(10 * time.Second)
	h.eventually("second list", func() bool { return h.lists() == 2 && h.clock.Waiters() == 2 })
	h.clock.Step(19 * time.Second)
	h.rt.failList(nil)
	if got := h.lists(); got != 2 {
		t.Fatalf("listed %d times before the back-off expired, want 2", got)
	}
	h.clock.Step(time.Second)
	h.waitState("web-1: web/0 Running")
}

func (h *harness) lists() int {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	return h.rt.lists
}

func TestSandboxAndNetworkErrorsRetriedWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.rt.fail("create web-1", errors.New("no user-ID range left"))
	h.c.Update(snapshot(testPod("web", "web-1")))
	h.eventually("SandboxCreateError", func() bool {
		p, _ := h.pod("default/web")
		return p.Status.Reason == "SandboxCreateError" && p.Status.Phase == corev1.PodPending
	})

	h.rt.fail("create web-1", nil)
	h.net.fail(errors.New("allocate address: range 10.88.0.0/30 is full"))
	h.clock.Step(10 * time.Second)
	h.eventually("NetworkSetupError", func() bool {
		p, _ := h.pod("default/web")
		return p.Status.Reason == "NetworkSetupError" &&
			p.Status.Message == "set up pod network: allocate address: range 10.88.0.0/30 is full"
	})

	h.net.fail(nil)
	h.clock.Step(19 * time.Second)
	if got := h.rt.state(); got[0] != "web-1:" {
		t.Fatalf("retried early: %q", got)
	}
	h.clock.Step(time.Second)
	h.waitPhase("default/web", corev1.PodRunning)
}

func TestRemoveErrorsRetried(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1")))
	h.waitStarted("default/web", "web-1", "web", 0)
	h.rt.fail("remove web-1 30s", errors.New("device busy"))
	h.c.Update(snapshot(testPod("web", "web-2")))
	h.eventually("RemovePodError on the new pod", func() bool {
		p, _ := h.pod("default/web")
		return p.UID == "web-2" && p.Status.Reason == "RemovePodError"
	})
	h.rt.fail("remove web-1 30s", nil)
	h.clock.Step(10 * time.Second)
	h.waitState("web-2: web/0 Running")
}

func TestBlockedPodDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t)
	h.start()
	release := h.rt.block("pod-0")
	defer release()
	var pods []*manifests.Pod
	var want []string
	for i := range 100 {
		pods = append(pods, testPod(fmt.Sprintf("pod-%d", i), fmt.Sprintf("pod-%d", i)))
		if i > 0 {
			want = append(want, fmt.Sprintf("pod-%d: web/0 Running", i))
		}
	}
	h.c.Update(snapshot(pods...))
	h.eventually("99 pods running", func() bool {
		got := h.rt.state()
		return len(got) == 99 && slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
	})
	p, _ := h.pod("default/pod-0")
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("blocked pod phase = %s, want Pending", p.Status.Phase)
	}
}

func TestPanicInWorkerIsRecovered(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.rt.fail("create web-1", errPanic)
	h.c.Update(snapshot(testPod("web", "web-1")))
	h.eventually("InternalError", func() bool {
		p, _ := h.pod("default/web")
		return p.Status.Reason == "InternalError"
	})
	h.rt.fail("create web-1", nil)
	h.clock.Step(10 * time.Second)
	h.waitState("web-1: web/0 Running")
}

func TestContainersOfAPodStartConcurrently(t *testing.T) {
	h := newHarness(t)
	h.rt.rendezvous = newRendezvous(3)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withContainers("a", "b", "c"))))
	h.waitState("web-1: a/0 Running b/0 Running c/0 Running")
	if p := h.waitPhase("default/web", corev1.PodRunning); p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase = %s", p.Status.Phase)
	}
}

func TestPanicInOneOfConcurrentStartsIsRecovered(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.rt.fail("start web-1/b/0", errPanic)
	h.c.Update(snapshot(testPod("web", "web-1", withContainers("a", "b"))))
	h.eventually("InternalError", func() bool {
		p, _ := h.pod("default/web")
		return p.Status.Reason == "InternalError"
	})
	h.rt.fail("start web-1/b/0", nil)
	h.clock.Step(10 * time.Second)
	h.waitState("web-1: a/0 Running b/0 Running")
}

func TestHealthy(t *testing.T) {
	h := newHarness(t)
	h.start()
	if err := h.c.Healthy(epoch); err != nil {
		t.Errorf("Healthy at start: %v", err)
	}
	if err := h.c.Healthy(epoch.Add(3 * time.Hour)); err == nil {
		t.Error("Healthy after three silent hours: nil, want an error")
	}
}

// TestConvergesWhateverTheOrder replays the same steps (snapshots, exits,
// failures, resyncs) in random orders, then the final snapshot: the runtime
// must end up running exactly the final pods, whatever came before.
func TestConvergesWhateverTheOrder(t *testing.T) {
	a1, a2 := testPod("a", "a-1"), testPod("a", "a-2", withGrace(3))
	b1, c1 := testPod("b", "b-1", withContainers("x", "y")), testPod("c", "c-1")
	steps := []func(h *harness){
		func(h *harness) { h.c.Update(snapshot(a1, b1)) },
		func(h *harness) { h.c.Update(snapshot(a2, c1)) },
		func(h *harness) { h.c.Update(snapshot(b1)) },
		func(h *harness) { h.rt.exit("a-1", "web", 1) },
		func(h *harness) { h.rt.exit("b-1", "y", 0) },
		func(h *harness) { h.rt.exit("c-1", "web", 2) },
		func(h *harness) { h.clock.Step(time.Hour) },
		func(h *harness) { h.rt.failList(errors.New("transient")) },
		func(h *harness) { h.rt.failList(nil) },
		func(h *harness) { h.rt.fail("create c-1", errors.New("transient")) },
		func(h *harness) { h.rt.fail("create c-1", nil) },
	}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := newHarness(t)
			h.rt.add(runningState(a1, ContainerState{Name: "web", Phase: ContainerRunning}))
			h.start()
			r := rand.New(rand.NewPCG(seed, 0))
			for _, i := range r.Perm(len(steps)) {
				steps[i](h)
			}
			h.rt.failList(nil)
			h.rt.fail("create c-1", nil)
			h.c.Update(snapshot(a2, b1))
			h.converge(func() bool {
				got := h.rt.state()
				return len(got) == 2 &&
					strings.HasPrefix(got[0], "a-2: ") && strings.Count(got[0], "Running") == 1 &&
					strings.HasPrefix(got[1], "b-1: ") && strings.Count(got[1], "Running") == 2
			})
		})
	}
}
