package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// These tests are the acceptance of probes, init containers, sidecars and
// hooks, end to end through the agent against busybox. The agent's probes
// dial the pods' addresses in the test agent's CIDR; the hooks' httpGet
// goes to a test server on 127.0.0.1.

// TestLifecycleProbes runs a pod with an httpGet readiness probe on a named
// port, a tcpSocket liveness probe and a grpc readiness probe, and flips
// its readiness by adding and removing the file the httpGet probe asks
// for; and a pod whose liveness probe fails, which restarts.
func TestLifecycleProbes(t *testing.T) {
	a := newRootAgent(t)
	www, tools := openDir(t, 0o755), openDir(t, 0o755)
	buildGRPCHealth(t, tools)
	a.start()
	a.writeManifest("probes.yaml", probesPod(a.Image, www, tools))
	a.writeManifest("doomed.yaml", doomedPod(a.Image))

	p := a.waitPod("default/probes", "running, web not ready", 60*time.Second, func(p *corev1.Pod) error {
		if err := running(p); err != nil {
			return err
		}
		return readiness(p, map[string]bool{"web": false, "tcp": true, "grpc": true}, corev1.ConditionFalse)
	})
	if c := condition(p, corev1.PodReady); c.Message != "containers with unready status: [web]" {
		t.Errorf("Ready condition %+v, want web named unready", c)
	}
	if err := os.WriteFile(filepath.Join(www, "ready"), []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := a.waitPod("default/probes", "ready", 30*time.Second, func(p *corev1.Pod) error {
		return readiness(p, map[string]bool{"web": true, "tcp": true, "grpc": true}, corev1.ConditionTrue)
	})
	if !condition(ready, corev1.PodReady).LastTransitionTime.After(condition(p, corev1.PodReady).LastTransitionTime.Time) {
		t.Errorf("Ready's lastTransitionTime did not move when it turned true")
	}
	if err := os.Remove(filepath.Join(www, "ready")); err != nil {
		t.Fatal(err)
	}
	a.waitPod("default/probes", "not ready again", 30*time.Second, func(p *corev1.Pod) error {
		return readiness(p, map[string]bool{"web": false, "tcp": true, "grpc": true}, corev1.ConditionFalse)
	})
	if p := a.pod("default/probes"); restarts(p) != 0 {
		t.Errorf("probes pod restarted %d times: a passing liveness probe killed a container", restarts(p))
	}

	// Nothing listens on the doomed container's liveness port: it is
	// killed (SIGKILL after the probe's 1 s grace, sleep ignores SIGTERM
	// as PID 1) and restarted.
	a.waitPod("default/doomed", "restarted by its liveness probe", 60*time.Second, func(p *corev1.Pod) error {
		cs := p.Status.ContainerStatuses[0]
		if cs.RestartCount < 1 || cs.LastTerminationState.Terminated == nil {
			return fmt.Errorf("restarts %d, last state %+v", cs.RestartCount, cs.LastTerminationState)
		}
		if code := cs.LastTerminationState.Terminated.ExitCode; code != 137 {
			return fmt.Errorf("killed container exited %d, want 137 (SIGKILL after the grace period)", code)
		}
		return nil
	})
}

// TestLifecycleInitHooks runs a pod with two init containers and a
// sidecar between them, writing their names to a shared file in order, an
// app container with a postStart httpGet hook and a preStop sleep; kills
// the sidecar, which restarts; then removes the pod and checks that the
// app got SIGTERM only after its preStop hook and before the sidecar.
func TestLifecycleInitHooks(t *testing.T) {
	a := newRootAgent(t)
	work := openDir(t, 0o777)
	hooks := serveHooks(t)
	a.start()
	a.writeManifest("lifecycle.yaml", lifecyclePod(a.Image, work, hooks.port))

	p := a.waitPod("default/lifecycle", "running and ready", 60*time.Second, func(p *corev1.Pod) error {
		if err := running(p); err != nil {
			return err
		}
		if c := condition(p, corev1.PodReady); c.Status != corev1.ConditionTrue {
			return fmt.Errorf("not ready: %+v", c)
		}
		return nil
	})
	if got := readOrder(t, work); got != "first side second app" {
		t.Errorf("order of starts %q, want first side second app", got)
	}
	if c := condition(p, corev1.PodInitialized); c.Status != corev1.ConditionTrue {
		t.Errorf("Initialized condition %+v, want True", c)
	}
	for _, cs := range p.Status.InitContainerStatuses {
		switch {
		case cs.Name == "side" && cs.State.Running == nil:
			t.Errorf("sidecar status %+v, want running", cs.State)
		case cs.Name != "side" && (cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed"):
			t.Errorf("init container %s status %+v, want Completed", cs.Name, cs.State)
		}
	}
	a.eventually("the postStart hook's request", 10*time.Second, func() error {
		if !hooks.seen("/started") {
			return errors.New("not received")
		}
		return nil
	})

	// The sidecar restarts whatever the pod's restartPolicy (Never).
	if err := syscall.Kill(a.mainPID(p, "side"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.waitPod("default/lifecycle", "sidecar restarted", 60*time.Second, func(p *corev1.Pod) error {
		for _, cs := range p.Status.InitContainerStatuses {
			if cs.Name == "side" && (cs.RestartCount != 1 || cs.State.Running == nil) {
				return fmt.Errorf("sidecar: restarts %d, state %+v", cs.RestartCount, cs.State)
			}
		}
		return nil
	})
	a.eventually("the restarted sidecar's line", 10*time.Second, func() error {
		if got := readOrder(t, work); got != "first side second app side" {
			return fmt.Errorf("order %q", got)
		}
		return nil
	})

	removed := time.Now()
	a.removeManifest("lifecycle.yaml")
	a.eventually("the pod gone", 30*time.Second, func() error {
		if a.pod("default/lifecycle") != nil {
			return errors.New("still there")
		}
		return nil
	})
	got := readOrder(t, work)
	if !strings.HasSuffix(got, "app-term side-term") {
		t.Errorf("order %q: want the app to get SIGTERM before the sidecar", got)
	}
	fi, err := os.Stat(filepath.Join(work, "app-term"))
	if err != nil {
		t.Fatal(err)
	}
	if d := fi.ModTime().Sub(removed); d < 2*time.Second {
		t.Errorf("the app got SIGTERM %s after the removal, before its 2 s preStop sleep ended", d)
	}
}

// readiness checks the containers' ready flags and the pod's Ready and
// ContainersReady conditions.
func readiness(p *corev1.Pod, want map[string]bool, cond corev1.ConditionStatus) error {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready != want[cs.Name] {
			return fmt.Errorf("container %s ready %v, want %v", cs.Name, cs.Ready, want[cs.Name])
		}
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		if c := condition(p, t); c.Status != cond {
			return fmt.Errorf("condition %s %+v, want %s", t, c, cond)
		}
	}
	return nil
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}

// readOrder returns the names the pod's containers wrote to order, one
// per line, as one line.
func readOrder(t *testing.T, work string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(work, "order"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// openDir returns a temporary directory with mode, for a hostPath volume
// that the pod's root, an unprivileged host UID, reads or writes.
func openDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildGRPCHealth builds testdata/grpchealth, static, into dir.
func buildGRPCHealth(t *testing.T, dir string) {
	t.Helper()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "grpchealth"), "./testdata/grpchealth")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/grpchealth: %v\n%s", err, out)
	}
}

// hookServer records the paths requested by the pods' hooks.
type hookServer struct {
	port int
	mu   sync.Mutex
	got  map[string]bool
}

func serveHooks(t *testing.T) *hookServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookServer{port: l.Addr().(*net.TCPAddr).Port, got: make(map[string]bool)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.got[r.URL.Path] = true
		h.mu.Unlock()
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hookServer) seen(path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[path]
}

func probesPod(image, www, tools string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: probes}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: www, hostPath: {path: %[2]q}}
  - {name: tools, hostPath: {path: %[3]q}}
  containers:
  - name: web
    image: %[1]q
    command: [httpd, -f, -p, "8080", -h, /www]
    ports: [{name: http, containerPort: 8080}]
    volumeMounts: [{name: www, mountPath: /www}]
    readinessProbe:
      httpGet: {path: /ready, port: http, httpHeaders: [{name: X-Probe, value: peapod}]}
      periodSeconds: 1
  - name: tcp
    image: %[1]q
    command: [sh, -c, 'mkdir -p /w && exec httpd -f -p 9000 -h /w']
    # httpd may take a moment to listen on a loaded machine: the probe
    # waits a second and allows three failures, as real manifests do.
    livenessProbe:
      tcpSocket: {port: 9000}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 3
  - name: grpc
    image: %[1]q
    command: [/tools/grpchealth, ":9090"]
    volumeMounts: [{name: tools, mountPath: /tools, readOnly: true}]
    readinessProbe:
      grpc: {port: 9090}
      periodSeconds: 1
`, image, www, tools)
}

func doomedPod(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: doomed}
spec:
  containers:
  - name: doomed
    image: %q
    command: [sleep, "3600"]
    livenessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 1
      terminationGracePeriodSeconds: 1
`, image)
}

// lifecyclePod's containers append their names to /work/order when they
// start and, for the app and the sidecar, NAME-term when SIGTERM comes;
// the app also leaves /work/app-term then.
func lifecyclePod(image, work string, hookPort int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: lifecycle}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  volumes: [{name: work, hostPath: {path: %[2]q}}]
  initContainers:
  - name: first
    image: %[1]q
    command: [sh, -c, 'echo first >> /work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: side
    image: %[1]q
    restartPolicy: Always
    command: [sh, -c, 'echo side >> /work/order; trap "echo side-term >> /work/order; exit 0" TERM; while true; do sleep 0.1; done']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: %[1]q
    command: [sh, -c, 'echo second >> /work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: %[1]q
    command: [sh, -c, 'echo app >> /work/order; trap "touch /work/app-term; echo app-term >> /work/order; exit 0" TERM; while true; do sleep 0.1; done']
    volumeMounts: [{name: work, mountPath: /work}]
    lifecycle:
      postStart: {httpGet: {host: 127.0.0.1, port: %[3]d, path: /started}}
      preStop: {sleep: {seconds: 2}}
`, image, work, hookPort)
}

// TestLifecycleTermMsg (a short name: the shim socket path holds it) runs containers that leave a termination
// message at the default path and at their own, one that fails with
// FallbackToLogsOnError and one whose message file wins over its log, and
// checks the messages in their terminated states.
func TestLifecycleTermMsg(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("bye.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bye}
spec:
  restartPolicy: Never
  containers:
  - name: default
    image: %[1]q
    command: [sh, -c, 'echo -n "bye from default" > /dev/termination-log; exit 3']
  - name: custom
    image: %[1]q
    securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}
    terminationMessagePath: /var/why
    command: [sh, -c, 'echo -n "bye from custom" > /var/why']
  - name: fallback
    image: %[1]q
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, 'echo first line; echo last line; exit 1']
  - name: file-wins
    image: %[1]q
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, 'echo -n "from the file" > /dev/termination-log; echo from the log; exit 1']
`, a.Image))
	want := map[string]string{
		"default":   "bye from default",
		"custom":    "bye from custom",
		"fallback":  "first line\nlast line\n",
		"file-wins": "from the file",
	}
	a.waitPod("default/bye", "terminated with messages", 60*time.Second, func(p *corev1.Pod) error {
		for _, cs := range p.Status.ContainerStatuses {
			term := cs.State.Terminated
			if term == nil {
				return fmt.Errorf("container %s not terminated: %+v", cs.Name, cs.State)
			}
			if term.Message != want[cs.Name] {
				return fmt.Errorf("container %s message %q, want %q", cs.Name, term.Message, want[cs.Name])
			}
		}
		return nil
	})
}

// TestLifecycleExecActions runs exec probes and an exec preStop hook
// through the runtime's exec: the readiness probe passes once a file
// exists in the container, the liveness probe restarts the container once
// another file appears, and the preStop hook runs before the stop.
func TestLifecycleExecActions(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	stopped := t.TempDir()
	// Container root is an unprivileged host user.
	if err := os.Chmod(stopped, 0o777); err != nil {
		t.Fatal(err)
	}
	a.writeManifest("ex.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: ex}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{name: out, hostPath: {path: %s}}]
  containers:
  - name: c
    image: %q
    command: [sleep, "100000"]
    volumeMounts: [{name: out, mountPath: /out}]
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1, timeoutSeconds: 10}
    livenessProbe: {exec: {command: [sh, -c, "! test -e /tmp/die"]}, periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 2}
    lifecycle: {preStop: {exec: {command: [sh, -c, "echo pre-stop > /out/stopped"]}}}
`, stopped, a.Image))
	ready := func(want bool) func(*corev1.Pod) error {
		return func(p *corev1.Pod) error {
			if err := running(p); err != nil {
				return err
			}
			if got := p.Status.ContainerStatuses[0].Ready; got != want {
				return fmt.Errorf("ready %v", got)
			}
			return nil
		}
	}
	a.waitPod("default/ex", "running, not ready", 30*time.Second, ready(false))
	if out, code := runPeapod(t, "exec", "--state", a.cfg.State, "ex", "--", "touch", "/tmp/ready"); code != 0 {
		t.Fatalf("peapod exec touch: exit %d: %s", code, out)
	}
	a.waitPod("default/ex", "ready once /tmp/ready exists", 30*time.Second, ready(true))

	if out, code := runPeapod(t, "exec", "--state", a.cfg.State, "ex", "--", "touch", "/tmp/die"); code != 0 {
		t.Fatalf("peapod exec touch: exit %d: %s", code, out)
	}
	a.waitPod("default/ex", "restarted by its liveness probe", 60*time.Second, func(p *corev1.Pod) error {
		if restarts(p) < 1 {
			return fmt.Errorf("%d restarts", restarts(p))
		}
		return running(p)
	})

	a.removeManifest("ex.yaml")
	eventually(t, "the preStop hook's file", 30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(stopped, "stopped"))
		if err != nil || string(b) != "pre-stop\n" {
			return fmt.Errorf("%q, %v", b, err)
		}
		return nil
	})
}
