package reconcile

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peapod/peapod/manifests"
)

// isReady reports whether the controller's Ready channel is closed.
func isReady(c *Controller) bool {
	select {
	case <-c.Ready():
		return true
	default:
		return false
	}
}

// waitCall polls the transcript for call: a call blocked in the fake
// runtime makes no controller turn that eventually would wait for.
func waitCall(t *testing.T, h *harness, call string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(h.log.get(), call); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no call %q: %q", call, h.log.get())
		}
	}
}

// TestReadyAfterAdoption checks that the controller is ready only once the
// pods running at its start have been synced, and that a new pod does not
// hold it up.
func TestReadyAfterAdoption(t *testing.T) {
	h := newHarness(t)
	web := testPod("web", "web-1")
	// Its container exited while the agent was down: adopting the pod
	// restarts it, and the test holds that start.
	h.rt.add(runningState(web, ContainerState{
		Name: "web", Phase: ContainerExited, ExitCode: 3, StartedAt: epoch.Add(-time.Hour), FinishedAt: epoch.Add(-time.Minute),
	}))
	release := h.rt.block(web.UID())
	api := testPod("api", "api-1")
	blockAPI := h.rt.block(api.UID())
	defer blockAPI()
	h.start()
	if isReady(h.c) {
		t.Fatal("ready before the first snapshot")
	}
	h.c.Update(snapshot(web, api))
	waitCall(t, h, "start web-1/web/1")
	if isReady(h.c) {
		t.Fatal("ready while a running pod is still being adopted")
	}
	release()
	h.eventually("ready", func() bool { return isReady(h.c) })
	// api, a new pod, is still blocked in its sandbox creation.
	waitCall(t, h, "create api-1")
	if got := h.log.get(); slices.ContainsFunc(got, func(c string) bool { return strings.HasPrefix(c, "start api-1") }) {
		t.Errorf("calls %q, want api's creation not past it", got)
	}
	if !isReady(h.c) {
		t.Error("not ready any more")
	}
}

func TestReadyWithNothingRunning(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.c.Update(manifests.Snapshot{})
	h.eventually("ready", func() bool { return isReady(h.c) })
}
