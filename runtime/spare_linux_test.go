package runtime

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod/peapod/reconcile"
)

// waitSpare waits until r has a spare shim ready and returns its PID.
func waitSpare(t *testing.T, r *Runtime) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.spares.mu.Lock()
		sp := r.spares.ready
		r.spares.mu.Unlock()
		if sp != nil {
			return sp.PID()
		}
	}
	t.Fatal("no spare shim ready after 10s")
	return 0
}

// TestRootSpareShim: CreateSandbox binds the ready spare (the pod's shim
// is the spare's process: nothing was started on the critical path), its
// containers run, and another spare takes its place.
func TestRootSpareShim(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	spare := waitSpare(t, r)
	pod := newPod("spare", shellContainer("app", `echo hello; exec sleep 1000`), shellContainer("side", `exec sleep 1000`))
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := shimPID(t, r, pod.UID); got != spare {
		t.Fatalf("pod shim %d, want the spare %d", got, spare)
	}
	start(t, r, pod.UID, "app", 0)
	start(t, r, pod.UID, "side", 0)
	st := podState(t, r, pod.UID)
	for _, name := range []string{"app", "side"} {
		if c := latest(st, name); c == nil || c.Phase != reconcile.ContainerRunning || !processAlive(c.PID) {
			t.Errorf("%s: %+v", name, c)
		}
	}
	if next := waitSpare(t, r); next == spare {
		t.Errorf("spare %d still offered after it was bound", next)
	}
	// The runtime finds and stops a bound spare like a launched shim.
	if err := r.RemovePod(ctx, pod.UID, 0); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pod.UID, spare)
}

// TestRootSpareDeadFallsBack: a spare that died while it waited is
// replaced by a launched shim.
func TestRootSpareDeadFallsBack(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	spare := waitSpare(t, r)
	if err := unix.Kill(spare, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for processAlive(spare) {
		time.Sleep(5 * time.Millisecond)
	}
	pod := newPod("dead-spare", shellContainer("app", `exec sleep 1000`))
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	shim := shimPID(t, r, pod.UID)
	if shim == spare || !processAlive(shim) {
		t.Fatalf("pod shim %d (dead spare %d)", shim, spare)
	}
	start(t, r, pod.UID, "app", 0)
	if c := latest(podState(t, r, pod.UID), "app"); c == nil || c.Phase != reconcile.ContainerRunning {
		t.Errorf("app: %+v", c)
	}
	if next := waitSpare(t, r); next == spare {
		t.Errorf("dead spare %d still offered", next)
	}
	if err := r.RemovePod(ctx, pod.UID, 0); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pod.UID, shim)
}

// TestRootCloseDropsSpare: Close leaves no spare behind, and a Runtime
// with NoSpareShim starts none.
func TestRootCloseDropsSpare(t *testing.T) {
	env := newTestEnv(t)
	r, err := New(env.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	spare := waitSpare(t, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if processAlive(spare) {
		t.Errorf("spare %d runs after Close", spare)
	}

	opts := env.opts
	opts.NoSpareShim = true
	none, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { none.Close() })
	if none.spares != nil {
		t.Error("spare pool with NoSpareShim")
	}
}
