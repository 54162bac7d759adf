package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	testclock "k8s.io/utils/clock/testing"

	"github.com/peapod/peapod/manifests"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness runs a Controller against the fakes, on a fake clock whose
// resync ticker never fires unless a test steps an hour.
type harness struct {
	t      *testing.T
	clock  *testclock.FakeClock
	log    *transcript
	rt     *fakeRuntime
	net    *fakeNetwork
	c      *Controller
	turned chan struct{}
	// metrics, when set before start, is handed to the controller.
	metrics *Metrics
	// disk, when set before start, is handed to the controller.
	disk DiskMeter
	// images, when set before start, is handed to the controller.
	images Images
	// exec, when set before start, is handed to the controller.
	exec Execer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, clock: testclock.NewFakeClock(epoch), log: &transcript{}, turned: make(chan struct{}, 1)}
	h.rt = newFakeRuntime(h.clock, h.log)
	h.net = newFakeNetwork(h.log)
	return h
}

// start runs the controller until the test ends.
func (h *harness) start() {
	h.t.Helper()
	h.c = New(Options{
		Runtime: h.rt,
		Network: h.net,
		Clock:   h.clock,
		Log:     slog.New(slog.NewTextHandler(h.t.Output(), nil)),
		Resync:  time.Hour,
		Metrics: h.metrics,
		Disk:    h.disk,
		Images:  h.images,
		Exec:    h.exec,
	})
	h.c.afterTurn = func() { poke(h.turned) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

// eventually waits until cond holds, re-checking after every controller
// turn.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-h.turned:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s\nruntime: %q\ncalls: %q", what, h.rt.state(), h.log.get())
		}
	}
}

// converge steps the clock a minute at a time, so that every back-off
// expires, until cond holds.
func (h *harness) converge(cond func() bool) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		h.clock.Step(time.Minute)
		select {
		case <-h.turned:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			h.t.Fatalf("did not converge\nruntime: %q\ncalls: %q", h.rt.state(), h.log.get())
		}
	}
}

// waitState waits until the runtime holds exactly want (fakeRuntime.state).
func (h *harness) waitState(want ...string) {
	h.t.Helper()
	h.eventually(fmt.Sprintf("runtime state %q", want), func() bool {
		return slices.Equal(h.rt.state(), want)
	})
}

// waitWaiting waits until the container's status is Waiting with reason
// after restarts restarts.
func (h *harness) waitWaiting(key, container, reason string, restarts int) corev1.ContainerStatus {
	h.t.Helper()
	var cs corev1.ContainerStatus
	h.eventually(fmt.Sprintf("%s %s waiting with %s after %d restarts", key, container, reason, restarts), func() bool {
		var ok bool
		cs, ok = h.containerStatus(key, container)
		return ok && cs.State.Waiting != nil && cs.State.Waiting.Reason == reason && cs.RestartCount == int32(restarts)
	})
	return cs
}

// waitStarted waits until the pod's status shows the attempt running, as
// the runtime reported it: the worker has then synced the list that its
// start asked for, and nothing is left in flight.
func (h *harness) waitStarted(key string, uid types.UID, container string, attempt int) {
	h.t.Helper()
	id := fmt.Sprintf("peapod://%s/%s/%d", uid, container, attempt)
	h.eventually(fmt.Sprintf("%s running as %s", key, id), func() bool {
		cs, ok := h.containerStatus(key, container)
		return ok && cs.State.Running != nil && cs.ContainerID == id
	})
}

// waitIP waits until the pod reports ip as its address.
func (h *harness) waitIP(key, ip string) corev1.Pod {
	h.t.Helper()
	var p corev1.Pod
	h.eventually(fmt.Sprintf("%s with IP %s", key, ip), func() bool {
		var ok bool
		p, ok = h.pod(key)
		return ok && p.Status.PodIP == ip
	})
	return p
}

// pod returns the status of the live pod with key.
func (h *harness) pod(key string) (corev1.Pod, bool) {
	for _, p := range h.c.Pods() {
		if p.Namespace+"/"+p.Name == key && p.DeletionTimestamp == nil {
			return p, true
		}
	}
	return corev1.Pod{}, false
}

func (h *harness) containerStatus(key, container string) (corev1.ContainerStatus, bool) {
	p, ok := h.pod(key)
	if !ok {
		return corev1.ContainerStatus{}, false
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if cs.Name == container {
			return cs, true
		}
	}
	return corev1.ContainerStatus{}, false
}

func (h *harness) waitPhase(key string, phase corev1.PodPhase) corev1.Pod {
	h.t.Helper()
	var p corev1.Pod
	h.eventually(fmt.Sprintf("%s in phase %s", key, phase), func() bool {
		var ok bool
		p, ok = h.pod(key)
		return ok && p.Status.Phase == phase
	})
	return p
}

// calls returns the transcript from index from on.
func (h *harness) callsSince(from int) []string { return h.log.get()[from:] }

func (h *harness) checkCalls(from int, want ...string) {
	h.t.Helper()
	if diff := cmp.Diff(want, h.callsSince(from)); diff != "" {
		h.t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// testPod returns a manifest pod named name with one container "web" per
// name in containers (default "web").
func testPod(name, uid string, mods ...func(*corev1.Pod)) *manifests.Pod {
	file := "/etc/peapod/" + name + ".yaml"
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   "default",
			UID:         types.UID(uid),
			Annotations: map[string]string{manifests.AnnotationManifest: file},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyAlways,
			Containers:    []corev1.Container{{Name: "web", Image: "busybox"}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return &manifests.Pod{Pod: p, File: file}
}

func withPolicy(policy corev1.RestartPolicy) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.RestartPolicy = policy }
}

func withGrace(seconds int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = &seconds }
}

func withContainers(names ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers = nil
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
		}
	}
}

func snapshot(pods ...*manifests.Pod) manifests.Snapshot {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b *manifests.Pod) int { return strings.Compare(a.Key(), b.Key()) })
	return manifests.Snapshot{Pods: pods}
}

// runningState returns a PodState as an earlier agent left it, the
// containers given as attempts.
func runningState(p *manifests.Pod, containers ...ContainerState) *PodState {
	for i := range containers {
		c := &containers[i]
		c.ID = fmt.Sprintf("peapod://%s/%s/%d", p.UID(), c.Name, c.Attempt)
	}
	return &PodState{
		Pod:        p.Pod,
		Ready:      true,
		NetNSPath:  "/run/netns/" + string(p.UID()),
		PodIPs:     []string{"10.88.0.99"},
		CreatedAt:  epoch.Add(-time.Hour),
		Containers: containers,
	}
}
