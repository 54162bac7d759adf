package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The runtime's acceptance tests: what a container sees and what the host
// sees of it, checked from outside through /proc, the status API and
// `peapod logs`.
//
// Commands in these manifests go through Kubernetes $(VAR) expansion
// before the shell sees them: they use backticks for command substitution
// and write the shell's $$ as $$$$.

// rtLogs runs `peapod logs` against the test agent.
func rtLogs(a *rootAgent, args ...string) (string, int) {
	a.t.Helper()
	return runPeapod(a.t, append([]string{"logs", "--state", a.cfg.State}, args...)...)
}

// rtWaitLog waits until `peapod logs args...` prints every one of want and
// returns its output.
func rtWaitLog(a *rootAgent, want []string, args ...string) string {
	a.t.Helper()
	var out string
	a.eventually(fmt.Sprintf("logs %v to show %q", args, want), 30*time.Second, func() error {
		var code int
		out, code = rtLogs(a, args...)
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("no %q in:\n%s", w, out)
			}
		}
		return nil
	})
	return out
}

// rtStatus returns the status of one container of pod.
func rtStatus(p *corev1.Pod, name string) (corev1.ContainerStatus, error) {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			return cs, nil
		}
	}
	return corev1.ContainerStatus{}, fmt.Errorf("no status for container %s", name)
}

// rtAlive reports whether pid exists and is not a zombie.
func rtAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// rtWaitGone waits until none of pids runs.
func rtWaitGone(a *rootAgent, what string, pids ...int) {
	a.t.Helper()
	a.eventually(what, 30*time.Second, func() error {
		for _, pid := range pids {
			if rtAlive(pid) {
				return fmt.Errorf("process %d still runs", pid)
			}
		}
		return nil
	})
}

// rtStatusField returns the fields after "name:" in /proc/PID/status.
func rtStatusField(t *testing.T, pid int, name string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name+":" {
			return f[1:]
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return nil
}

// TestRuntimeIdentity checks what a container is: root mapped to the
// pod's unprivileged host range, writing to its own copy of the rootfs;
// PID 1 of a namespace that shows only its own processes; the pod's name
// as hostname; env, args ($(VAR) expansion) and workingDir as given. The
// container reports from inside through its log, read with `peapod logs`.
func TestRuntimeIdentity(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	script := `echo uid=` + "`id -u`" + `; touch /newfile && echo touched; ` +
		`echo pid=$$$$; echo procs=` + "`ls /proc | grep -c '^[0-9]'`" + `; ` +
		`echo host=` + "`hostname`" + `; echo pwd=` + "`pwd`" + `; ` +
		`echo env=$GREETING,$DERIVED; echo args="$1|$2"; echo done; exec sleep 100000`
	a.writeManifest("ident.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: ident}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %q
    workingDir: /tmp
    env:
    - {name: GREETING, value: hello}
    - {name: DERIVED, value: "$(GREETING)-world"}
    command: [sh, -c, %q, sh]
    args: ["$(GREETING)-arg", "$$(GREETING)"]
`, a.Image, script))
	pod := a.waitPod("default/ident", "running", 30*time.Second, running)
	pid := a.mainPID(pod, "main")

	out := rtWaitLog(a, []string{"done"}, "ident")
	for _, want := range []string{
		"uid=0\n", "touched\n", "pid=1\n", "host=ident\n", "pwd=/tmp\n",
		"env=hello,hello-world\n", "args=hello-arg|$(GREETING)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("container log lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	// sh, ls, grep and the subshell at most: none of the host's processes.
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(line, "procs="); ok {
			if c, _ := strconv.Atoi(n); c < 1 || c > 5 {
				t.Errorf("the container saw %s processes in /proc, want its own few", n)
			}
		}
	}

	// The host sees container root as the first ID of a private range.
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Fields(string(uidMap))
	if len(m) != 3 || m[0] != "0" || m[2] != "65536" {
		t.Fatalf("uid_map = %q, want 0 <start> 65536", uidMap)
	}
	start, _ := strconv.Atoi(m[1])
	if start < 1<<30 {
		t.Errorf("uid_map maps 0 to %d, want an ID ≥ %d", start, 1<<30)
	}
	if uids := rtStatusField(t, pid, "Uid"); uids[0] != m[1] || uids[1] != m[1] {
		t.Errorf("host sees the container's root as Uid %v, want %s", uids, m[1])
	}

	// The write went to the container's upper dir, owned by its root on
	// the host, and not to the shared rootfs.
	rootfs := strings.TrimPrefix(a.Image, "rootfs:")
	if _, err := os.Stat(filepath.Join(rootfs, "newfile")); err == nil {
		t.Errorf("the container wrote through to the shared rootfs %s", rootfs)
	}
	var upper []string
	filepath.WalkDir(a.cfg.Root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "newfile" {
			upper = append(upper, path)
		}
		return nil
	})
	if len(upper) != 1 {
		t.Fatalf("found /newfile at %v under --root, want once in the container's upper dir", upper)
	}
	if fi, err := os.Stat(upper[0]); err != nil || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != m[1] {
		t.Errorf("%s: %v, want owned by %s", upper[0], err, m[1])
	}

	// `peapod logs` options: --tail and --timestamps; no previous attempt.
	if out, code := rtLogs(a, "--tail", "1", "default/ident"); code != 0 || out != "done\n" {
		t.Errorf("logs --tail 1 = %q (exit %d), want %q", out, code, "done\n")
	}
	if out, _ := rtLogs(a, "--timestamps", "--tail", "1", "ident"); !strings.HasSuffix(out, "Z done\n") {
		t.Errorf("logs --timestamps = %q, want an RFC 3339 time before the line", out)
	}
	if out, code := rtLogs(a, "-p", "ident"); code != 1 || !strings.Contains(out, "previous terminated container") {
		t.Errorf("logs -p = %q (exit %d), want no previous container", out, code)
	}
	if out, code := rtLogs(a, "nope"); code != 1 || !strings.Contains(out, "pod default/nope not found") {
		t.Errorf("logs nope = %q (exit %d), want pod not found", out, code)
	}
}

// TestRuntimeVolumes checks emptyDir, Memory emptyDir and a readOnly
// hostPath from inside the containers and from the host.
func TestRuntimeVolumes(t *testing.T) {
	a := newRootAgent(t)
	host := t.TempDir()
	// World-writable, so that only the read-only mount can refuse the
	// container's (unprivileged) root.
	if err := os.Chmod(host, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.start()
	writer := `echo hi >/shared/f && echo wrote; cat /host/hello; ` +
		`touch /host/x || echo write-refused; mount -o remount,rw /host || echo remount-refused; ` +
		`touch /host/y || echo still-refused; echo done; exec sleep 100000`
	reader := `until [ -f /shared/f ]; do sleep 0.1; done; echo saw=` + "`cat /shared/f`" + `; exec sleep 100000`
	a.writeManifest("vol.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: vol}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
  - {name: host, hostPath: {path: %q, type: Directory}}
  containers:
  - name: w
    image: %q
    command: [sh, -c, %q]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: host, mountPath: /host, readOnly: true}
  - name: r
    image: %q
    command: [sh, -c, %q]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: mem, mountPath: /mem}
`, host, a.Image, writer, a.Image, reader))
	pod := a.waitPod("default/vol", "running", 30*time.Second, running)

	out := rtWaitLog(a, []string{"done"}, "-c", "w", "vol")
	for _, want := range []string{"wrote", "from host", "write-refused", "remount-refused", "still-refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("writer's log lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"x", "y"} {
		if _, err := os.Stat(filepath.Join(host, f)); err == nil {
			t.Errorf("the container created %s in the read-only hostPath", f)
		}
	}
	rtWaitLog(a, []string{"saw=hi"}, "-c", "r", "vol")

	// From the host: the reader's /mem is a tmpfs of the size asked for.
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", a.mainPID(pod, "r")))
	if err != nil {
		t.Fatal(err)
	}
	var mem string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == "/mem" {
			mem = line
		}
	}
	if f := strings.Fields(mem); len(f) < 4 || f[2] != "tmpfs" || !slices.Contains(strings.Split(f[3], ","), "size=8192k") {
		t.Errorf("/mem is mounted as %q, want a tmpfs with size=8192k", mem)
	}

	if out, code := rtLogs(a, "vol"); code != 1 || !strings.Contains(out, "choose one with -c: w, r") {
		t.Errorf("logs without -c on two containers = %q (exit %d), want the containers listed", out, code)
	}
}

// TestRuntimeRestartAfterKill kills a container's main process from the
// host: it is restarted (restartPolicy Always), its sibling is untouched,
// and the status shows the restart and how the last attempt ended.
func TestRuntimeRestartAfterKill(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	// Each attempt counts itself in the pod's emptyDir.
	counter := `n=` + "`cat /data/n 2>/dev/null || echo 0`" + `; n=` + "`expr $n + 1`" +
		`; echo $n >/data/n; echo run=$n; exec sleep 100000`
	a.writeManifest("kill.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: kill}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - {name: a, image: %q, command: [sh, -c, %q], volumeMounts: [{name: data, mountPath: /data}]}
  - {name: b, image: %q, command: [sleep, "100000"]}
`, a.Image, counter, a.Image))
	pod := a.waitPod("default/kill", "running", 30*time.Second, running)
	pa, pb := a.mainPID(pod, "a"), a.mainPID(pod, "b")
	rtWaitLog(a, []string{"run=1"}, "-c", "a", "kill")

	if err := syscall.Kill(pa, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pod = a.waitPod("default/kill", "a restarted", 60*time.Second, func(p *corev1.Pod) error {
		cs, err := rtStatus(p, "a")
		if err != nil {
			return err
		}
		if cs.RestartCount != 1 || cs.State.Running == nil {
			return fmt.Errorf("a: restartCount %d, state %+v", cs.RestartCount, cs.State)
		}
		return nil
	})
	a0, _ := rtStatus(pod, "a")
	if last := a0.LastTerminationState.Terminated; last == nil || last.ExitCode != 137 || last.Reason != "Error" {
		t.Errorf("a's lastState = %+v, want terminated with exit code 137, reason Error", a0.LastTerminationState)
	}
	if b0, _ := rtStatus(pod, "b"); b0.RestartCount != 0 || b0.State.Running == nil {
		t.Errorf("b: restartCount %d, state %+v; want running, never restarted", b0.RestartCount, b0.State)
	}
	if now := a.mainPID(pod, "a"); now == pa {
		t.Errorf("a's main PID is still %d after the restart", pa)
	}
	if now := a.mainPID(pod, "b"); now != pb {
		t.Errorf("b's main PID changed from %d to %d", pb, now)
	}
	rtWaitLog(a, []string{"run=2"}, "-c", "a", "kill")
	if out, code := rtLogs(a, "--previous", "-c", "a", "kill"); code != 0 || out != "run=1\n" {
		t.Errorf("logs --previous = %q (exit %d), want the first attempt's %q", out, code, "run=1\n")
	}
}

// TestRuntimeAgentCrash kills the agent with SIGKILL: the containers keep
// running; what happens while it is down (a container exits, a manifest is
// removed) is seen when it comes back.
func TestRuntimeAgentCrash(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("keep.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: keep}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - {name: s, image: %q, command: [sleep, "100000"]}
  - {name: x, image: %q, command: [sh, -c, "until [ -f /tmp/go ]; do sleep 0.1; done; exit 3"]}
`, a.Image, a.Image))
	a.writeManifest("gone.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: gone}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %q, command: [sleep, "100000"]}
`, a.Image))
	keep := a.waitPod("default/keep", "running", 30*time.Second, running)
	gone := a.waitPod("default/gone", "running", 30*time.Second, running)
	ps, px, pg := a.mainPID(keep, "s"), a.mainPID(keep, "x"), a.mainPID(gone, "c")

	a.stop(syscall.SIGKILL)
	for _, pid := range []int{ps, px, pg} {
		if !rtAlive(pid) {
			t.Errorf("process %d died with the agent", pid)
		}
	}
	// x exits with code 3 once /tmp/go exists in its root filesystem.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/go", px), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rtWaitGone(a, "x to exit while the agent is down", px)
	a.removeManifest("gone.yaml")

	a.start()
	keep = a.waitPod("default/keep", "x's exit reported", 30*time.Second, func(p *corev1.Pod) error {
		cs, err := rtStatus(p, "x")
		if err != nil {
			return err
		}
		if term := cs.State.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "Error" {
			return fmt.Errorf("x: state %+v, want terminated with exit code 3, reason Error", cs.State)
		}
		return nil
	})
	if s, _ := rtStatus(keep, "s"); s.RestartCount != 0 || s.State.Running == nil {
		t.Errorf("s: restartCount %d, state %+v; want running, never restarted", s.RestartCount, s.State)
	}
	if now := a.mainPID(keep, "s"); now != ps {
		t.Errorf("s's main PID changed from %d to %d across the agent restart", ps, now)
	}
	a.eventually("pod gone torn down", 30*time.Second, func() error {
		if p := a.pod("default/gone"); p != nil {
			return fmt.Errorf("pod still listed: %s", p.Status.Phase)
		}
		if rtAlive(pg) {
			return fmt.Errorf("process %d still runs", pg)
		}
		return nil
	})
}

// TestRuntimeGracefulStop removes a pod whose one container handles
// SIGTERM and whose other ignores it: the first ends at once with its own
// exit code and last words in its log; the second is killed once
// terminationGracePeriodSeconds have passed.
func TestRuntimeGracefulStop(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	const grace = 3
	a.writeManifest("term.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: term}
spec:
  terminationGracePeriodSeconds: %d
  containers:
  - {name: polite, image: %q, command: [sh, -c, 'trap "echo bye; exit 0" TERM; echo ready; while true; do sleep 0.1; done']}
  - {name: stubborn, image: %q, command: [sh, -c, 'trap "" TERM; while true; do sleep 0.1; done']}
`, grace, a.Image, a.Image))
	pod := a.waitPod("default/term", "running", 30*time.Second, running)
	polite, stubborn := a.mainPID(pod, "polite"), a.mainPID(pod, "stubborn")
	rtWaitLog(a, []string{"ready"}, "-c", "polite", "term")

	// Follow polite's log across the stop: the log goes with the pod, and
	// `logs -f` must end by itself when the container does.
	var follow bytes.Buffer
	f := exec.Command(peapodBin, "logs", "-f", "--state", a.cfg.State, "-c", "polite", "term")
	f.Stdout, f.Stderr = &follow, &follow
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	var followErr error
	followed := make(chan struct{})
	go func() {
		followErr = f.Wait()
		close(followed)
	}()
	t.Cleanup(func() {
		f.Process.Kill()
		<-followed
	})
	a.eventually("logs -f to open the log", 10*time.Second, func() error {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", f.Process.Pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); strings.HasSuffix(l, "/polite/0.log") {
				return nil
			}
		}
		return fmt.Errorf("not open yet")
	})

	removed := time.Now()
	a.removeManifest("term.yaml")
	a.waitPod("default/term", "terminating", 30*time.Second, func(p *corev1.Pod) error {
		if p.DeletionTimestamp == nil {
			return fmt.Errorf("no deletionTimestamp")
		}
		return nil
	})
	// polite stops at once with its own exit code, while stubborn still
	// runs out its grace period. The agent publishes no status while it
	// waits for a pod to stop, so read the shim's exit record.
	exitFile := filepath.Join(a.cfg.State, "pods", string(pod.UID), "containers", "polite", "0", "exit.json")
	a.eventually("polite to exit first", 30*time.Second, func() error {
		b, err := os.ReadFile(exitFile)
		if err != nil {
			return err
		}
		var exit struct{ ExitCode, Signal int }
		if err := json.Unmarshal(b, &exit); err != nil {
			return err
		}
		if exit.ExitCode != 0 || exit.Signal != 0 {
			t.Fatalf("polite exited with %s, want exit code 0", b)
		}
		if !rtAlive(stubborn) {
			t.Fatalf("stubborn was gone before polite exited")
		}
		return nil
	})
	if rtAlive(polite) {
		t.Errorf("polite (%d) still runs after it was reported terminated", polite)
	}
	rtWaitGone(a, "stubborn to be killed", stubborn)
	if took := time.Since(removed); took < (grace-1)*time.Second {
		t.Errorf("stubborn was gone %v after the manifest's removal, before its %ds grace period", took, grace)
	}

	select {
	case <-followed:
		if followErr != nil || !strings.Contains(follow.String(), "bye") {
			t.Errorf("logs -f: %v, output %q; want it to end cleanly with bye", followErr, follow.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("logs -f still runs 30s after its container ended; output %q", follow.String())
	}
}

// TestRuntimeBadInput checks start failures at the runtime level: they
// show as Waiting with a reason and a message, are retried, and leave no
// process behind, while a good pod runs beside them.
func TestRuntimeBadInput(t *testing.T) {
	a := newRootAgent(t)
	missing := filepath.Join(t.TempDir(), "rootfs")
	a.start()
	pod := func(name, image, cmd string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %q, command: [%s]}
`, name, image, cmd)
	}
	a.writeManifest("nofs.yaml", pod("nofs", "rootfs:"+missing, "sleep, '100000'"))
	a.writeManifest("nocmd.yaml", pod("nocmd", a.Image, "/bin/no-such-command"))
	a.writeManifest("good.yaml", pod("good", a.Image, "sleep, '100000'"))

	waitingWith := func(reasons []string, msg string) func(*corev1.Pod) error {
		return func(p *corev1.Pod) error {
			cs, err := rtStatus(p, "c")
			if err != nil {
				return err
			}
			w := cs.State.Waiting
			if w == nil || !slices.Contains(reasons, w.Reason) || !strings.Contains(w.Message, msg) {
				return fmt.Errorf("state %+v, want waiting with a reason in %v and a message with %q", cs.State, reasons, msg)
			}
			return nil
		}
	}
	// A rootfs: image whose directory is missing is an image to pull
	// that is not there.
	nofs := a.waitPod("default/nofs", "ErrImagePull", 30*time.Second,
		waitingWith([]string{"ErrImagePull", "ImagePullBackOff"}, missing))
	nocmd := a.waitPod("default/nocmd", "a start error", 30*time.Second,
		waitingWith([]string{"RunContainerError", "CreateContainerError"}, "no-such-command"))
	a.waitPod("default/good", "running", 30*time.Second, running)
	for _, p := range []*corev1.Pod{nofs, nocmd} {
		if pids := a.containerPIDs(p, "c"); len(pids) > 0 {
			t.Errorf("%s: processes %v left in the container's cgroup after a failed start", p.Name, pids)
		}
	}
	if out, code := rtLogs(a, "nofs"); code != 1 || !strings.Contains(out, "waiting to start: ") {
		t.Errorf("logs nofs = %q (exit %d), want waiting to start", out, code)
	}

	// Retried: once the root filesystem exists, the container starts.
	if err := os.Symlink(strings.TrimPrefix(a.Image, "rootfs:"), missing); err != nil {
		t.Fatal(err)
	}
	a.waitPod("default/nofs", "running once its rootfs exists", 60*time.Second, running)
}
