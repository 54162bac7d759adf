package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/internal/proctest"
	"github.com/peapod/peapod/runtime/logs"
)

func TestRootPodLifecycle(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	pod := newPod("life",
		shellContainer("quick", `echo out-$(POD_NAME) $HOSTNAME; echo err >&2; cat /etc/hosts | grep -c 10.250.0.2; exit 7`),
		shellContainer("polite", `trap 'exit 3' TERM; while :; do sleep 0.1; done`),
		shellContainer("stubborn", `trap '' TERM; while :; do sleep 0.1; done`),
	)
	st, err := r.CreateSandbox(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.NetNSPath == "" {
		t.Fatalf("new sandbox: %+v", st)
	}
	again, err := r.CreateSandbox(ctx, pod)
	if err != nil || !again.Ready {
		t.Fatalf("CreateSandbox again: %+v, %v", again, err)
	}
	shimBefore := shimPID(t, r, pod.UID)

	for _, name := range []string{"quick", "polite", "stubborn"} {
		start(t, r, pod.UID, name, 0)
	}
	waitEvent(t, r, pod.UID)
	st = waitFor(t, r, pod.UID, "quick to exit", exited("quick"))
	if q := latest(st, "quick"); q.ExitCode != 7 || q.Reason != "Error" || q.FinishedAt.Before(q.StartedAt) {
		t.Errorf("quick: %+v", q)
	}
	for _, name := range []string{"polite", "stubborn"} {
		if c := latest(st, name); c.Phase != reconcile.ContainerRunning || !processAlive(c.PID) {
			t.Errorf("%s: %+v", name, c)
		}
	}
	if diff := strings.Join(st.PodIPs, ","); diff != "10.250.0.2" {
		t.Errorf("PodIPs %v", st.PodIPs)
	}
	checkLog(t, env, pod.Namespace, pod.Name, pod.UID, "quick", 0, "out-web-life web-life\nerr\n1\n")

	proctest.WaitSignal(t, latest(st, "polite").PID, syscall.SIGTERM, proctest.Caught)
	proctest.WaitSignal(t, latest(st, "stubborn").PID, syscall.SIGTERM, proctest.Ignored)
	stopped := time.Now()
	if err := r.StopContainer(ctx, pod.UID, "polite", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Exit code 3 comes from its TERM trap: a kill at the end of the grace
	// period would show 137.
	if p := latest(podState(t, r, pod.UID), "polite"); p.ExitCode != 3 {
		t.Errorf("polite stop after %v: %+v", time.Since(stopped), p)
	}
	stopped = time.Now()
	if err := r.StopContainer(ctx, pod.UID, "stubborn", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if s := latest(podState(t, r, pod.UID), "stubborn"); s.Signal != int(syscall.SIGKILL) || s.ExitCode != 137 || time.Since(stopped) < 300*time.Millisecond {
		t.Errorf("stubborn stop after %v: %+v", time.Since(stopped), s)
	}

	// A restart keeps the previous attempt's record but not its layer.
	start(t, r, pod.UID, "quick", 1)
	if _, err := os.Stat(r.attemptRoot(pod, "quick", 0)); !os.IsNotExist(err) {
		t.Errorf("writable layer of attempt 0 kept: %v", err)
	}
	if _, err := os.Stat(r.attemptRoot(pod, "polite", 0)); err != nil {
		t.Errorf("writable layer of another container removed: %v", err)
	}
	st = waitFor(t, r, pod.UID, "quick attempt 1 to exit", exited("quick"))
	var quick []int
	for _, c := range st.Containers {
		if c.Name == "quick" {
			quick = append(quick, c.Attempt)
		}
	}
	if len(quick) != 2 || latest(st, "quick").Attempt != 1 {
		t.Errorf("quick attempts %v", quick)
	}

	if err := r.RemovePod(ctx, pod.UID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := r.RemovePod(ctx, pod.UID, time.Second); err != nil {
		t.Fatalf("second RemovePod: %v", err)
	}
	assertGone(t, env, pod.UID, shimBefore)
}

func TestRootShimDeath(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	pod := newPod("dies", shellContainer("app", `sleep 1000`))
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	start(t, r, pod.UID, "app", 0)
	app := latest(podState(t, r, pod.UID), "app")
	if err := syscall.Kill(shimPID(t, r, pod.UID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r, pod.UID)
	st := waitFor(t, r, pod.UID, "app reported dead", exited("app"))
	if st.Ready {
		t.Error("pod with a dead shim is Ready")
	}
	if c := latest(st, "app"); c.ExitCode != 137 || c.Reason != "Error" || c.Message != "shim died" {
		t.Errorf("app: %+v", c)
	}
	waitProcessGone(t, app.PID, "container of the dead shim")
	if err := r.RemovePod(ctx, pod.UID, time.Second); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pod.UID, 0)
}

func TestRootAdoption(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	pod := newPod("adopt", shellContainer("long", `sleep 1000`), shellContainer("short", `sleep 0.3; exit 4`))
	first, err := New(env.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.CreateSandbox(ctx, pod); err != nil {
		first.Close()
		t.Fatal(err)
	}
	start(t, first, pod.UID, "long", 0)
	start(t, first, pod.UID, "short", 0)
	before := podState(t, first, pod.UID)
	long, short := latest(before, "long"), latest(before, "short")
	// The agent goes away; "short" exits while nobody watches.
	first.Close()
	waitProcessGone(t, short.PID, `container "short"`)

	r := env.runtime(t)
	// Its shim may still be writing the exit record.
	st := waitFor(t, r, pod.UID, "short's exit record", exited("short"))
	if !st.Ready || st.Pod.Name != pod.Name {
		t.Fatalf("adopted pod: ready %v, pod %s", st.Ready, st.Pod.Name)
	}
	if c := latest(st, "long"); c.Phase != reconcile.ContainerRunning || c.PID != long.PID {
		t.Errorf("long after restart: %+v (was pid %d)", c, long.PID)
	}
	if c := latest(st, "short"); c.Phase != reconcile.ContainerExited || c.ExitCode != 4 {
		t.Errorf("short after restart: %+v", c)
	}
	// The new Runtime watches the adopted shim: once its event stream is
	// registered (the listing above started the watcher), a stop is seen.
	waitConnected(t, r, pod.UID)
	if err := r.StopContainer(ctx, pod.UID, "long", 0); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r, pod.UID)
	if err := r.RemovePod(ctx, pod.UID, 0); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pod.UID, 0)
}

func TestRootStartErrors(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	missing := shellContainer("noimage", "true")
	missing.Image = "rootfs:/nonexistent"
	badCmd := shellContainer("badcmd", "")
	badCmd.Command = []string{"/no/such/binary"}
	pod := newPod("errs", missing, badCmd)
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for name, reason := range map[string]string{"noimage": "CreateContainerError", "badcmd": "RunContainerError"} {
		err := r.StartContainer(ctx, reconcile.StartRequest{UID: pod.UID, Container: name})
		var se *reconcile.StartError
		if !asStartError(err, &se) || se.Reason != reason {
			t.Errorf("%s: %v, want a %s", name, err, reason)
		}
	}
	if err := r.RemovePod(ctx, pod.UID, 0); err != nil {
		t.Fatal(err)
	}
}

// waitConnected waits until the runtime's event stream from the pod's shim
// is registered, so that every exit from then on becomes an event.
func waitConnected(t testing.TB, r *Runtime, uid types.UID) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.states.mu.Lock()
		up := r.states.connected[uid]
		r.states.mu.Unlock()
		if up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event stream from the shim of pod %s", uid)
		}
	}
}

func waitEvent(t testing.TB, r *Runtime, uid types.UID) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case got := <-r.Events():
			if got == uid {
				return
			}
		case <-timeout:
			t.Fatalf("no event for pod %s", uid)
		}
	}
}

func checkLog(t *testing.T, env *testEnv, ns, name string, uid types.UID, ctr string, attempt int, want string) {
	t.Helper()
	path := logs.Path(logs.PodDir(env.opts.LogDir, ns, name, uid), ctr, attempt)
	var buf bytes.Buffer
	if err := logs.Read(context.Background(), &buf, path, logs.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	// stdout and stderr are read concurrently: compare the sorted lines.
	if got, w := sortedLines(buf.String()), sortedLines(want); got != w {
		t.Errorf("log of %s: %q, want %q", ctr, buf.String(), want)
	}
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i := range lines {
		for j := i + 1; j < len(lines); j++ {
			if lines[j] < lines[i] {
				lines[i], lines[j] = lines[j], lines[i]
			}
		}
	}
	return strings.Join(lines, "\n")
}

// assertGone checks that nothing of the pod is left: directories, mounts,
// its shim, its user-ID range and its cgroup.
func assertGone(t *testing.T, env *testEnv, uid types.UID, shimPID int) {
	t.Helper()
	for _, d := range []string{
		filepath.Join(env.opts.StateDir, "pods", string(uid)),
		filepath.Join(env.opts.RootDir, "pods", string(uid)),
	} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", d, err)
		}
	}
	if entries, _ := os.ReadDir(env.opts.LogDir); len(entries) > 0 {
		t.Errorf("log dirs left: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(env.opts.StateDir, "userns")); len(entries) > 0 {
		t.Errorf("user-ID ranges left: %v", entries)
	}
	if mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(env.base)); len(mounts) > 0 {
		t.Errorf("mounts left: %v", mounts[0].Mountpoint)
	}
	if shimPID > 0 && processAlive(shimPID) {
		t.Errorf("shim %d still runs", shimPID)
	}
	cg := filepath.Join("/sys/fs/cgroup/memory", env.opts.Cgroups.Parent, "pod"+string(uid))
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still exists (%v)", cg, err)
	}
}

func asStartError(err error, target **reconcile.StartError) bool {
	return errors.As(err, target)
}

func TestRootHostNetwork(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	pod := newPod("hostnet", shellContainer("app", `hostname; cat /etc/hostname; cat /etc/hosts`))
	pod.Spec.HostNetwork = true
	st, err := r.CreateSandbox(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.NetNSPath != "" {
		t.Fatalf("hostNetwork sandbox: ready %v, netns %q", st.Ready, st.NetNSPath)
	}
	start(t, r, pod.UID, "app", 0)
	st = waitFor(t, r, pod.UID, "app to exit", exited("app"))
	if c := latest(st, "app"); c.ExitCode != 0 {
		t.Fatalf("app: %+v", c)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// kubelet gives a hostNetwork pod a copy of the host's /etc/hosts, so
	// the host's own name resolves in it.
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	want := host + "\n" + host + "\n# Kubernetes-managed hosts file (host network).\n" + string(hosts)
	checkLog(t, env, pod.Namespace, pod.Name, pod.UID, "app", 0, want)
	if err := r.RemovePod(ctx, pod.UID, 0); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pod.UID, 0)
}
