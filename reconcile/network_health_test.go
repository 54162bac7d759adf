package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// healthNetwork is a fakeNetwork that also reports pods whose network is
// unavailable.
type healthNetwork struct {
	*fakeNetwork

	mu          sync.Mutex
	unavailable map[types.UID]error
}

func (n *healthNetwork) NetworkUnavailable(uid types.UID) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.unavailable[uid]
}

func (n *healthNetwork) set(uid types.UID, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unavailable[uid] = err
}

// startWithNetwork runs the controller as harness.start does, with net.
func (h *harness) startWithNetwork(net Network) {
	h.c = New(Options{Runtime: h.rt, Network: net, Clock: h.clock,
		Log: slog.New(slog.NewTextHandler(h.t.Output(), nil)), Resync: time.Hour})
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

func condition(p corev1.Pod, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func TestNetworkUnavailableShowsInStatus(t *testing.T) {
	h := newHarness(t)
	net := &healthNetwork{fakeNetwork: h.net, unavailable: map[types.UID]error{}}
	h.startWithNetwork(net)
	h.c.Update(snapshot(testPod("web", "web-1")))
	h.waitStarted("default/web", "web-1", "web", 0)

	net.set("web-1", errors.New("recreate veth: no such netns"))
	h.c.NetworkHealthChanged()
	var p corev1.Pod
	h.eventually("NetworkUnavailable", func() bool {
		p, _ = h.pod("default/web")
		return p.Status.Reason == ReasonNetworkUnavailable
	})
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase = %s, want Running: the containers run", p.Status.Phase)
	}
	if want := "pod network unavailable: recreate veth: no such netns"; p.Status.Message != want {
		t.Errorf("message = %q, want %q", p.Status.Message, want)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady, corev1.PodReadyToStartContainers} {
		if c := condition(p, ct); c.Status != corev1.ConditionFalse || c.Reason != ReasonNetworkUnavailable {
			t.Errorf("condition %s = %s (%s), want False (%s)", ct, c.Status, c.Reason, ReasonNetworkUnavailable)
		}
	}
	if p.Status.ContainerStatuses[0].Ready {
		t.Errorf("container ready while its pod has no network")
	}
	since := condition(p, corev1.PodReady).LastTransitionTime

	h.clock.Step(time.Hour)
	turns := 0
	h.eventually("the resync's status", func() bool { turns++; return turns > 2 })
	if q, _ := h.pod("default/web"); !condition(q, corev1.PodReady).LastTransitionTime.Time.Equal(since.Time) {
		t.Errorf("Ready's lastTransitionTime moved from %v while the network stayed down", since)
	}

	net.set("web-1", nil)
	h.c.NetworkHealthChanged()
	h.eventually("ready again", func() bool {
		p, _ = h.pod("default/web")
		return p.Status.Reason == "" && condition(p, corev1.PodReady).Status == corev1.ConditionTrue && p.Status.ContainerStatuses[0].Ready
	})
}
