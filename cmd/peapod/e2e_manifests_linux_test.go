package main

// End-to-end tests of the manifest directory as a user drives it: drop,
// edit, reformat, rename, break, fix and delete files, feed it bad input,
// swap a ConfigMap-style "..data" symlink, take the directory away, restart
// the agent on a broken file, and read the result back through `peapod ps`.
// Everything is checked from outside: the status API, /proc, /metrics,
// /healthz and the agent's JSON log.

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// mfPod is a one-container pod; arg is sleep's argument, so changing it
// changes the pod's content and therefore its UID.
func mfPod(name, image, arg string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %q, command: [sleep, %q]}
`, name, image, arg)
}

// mfPodReformatted is mfPod(name, image, arg) spelt differently: comments,
// other key order, block style, quoting.
func mfPodReformatted(name, image, arg string) string {
	return fmt.Sprintf(`# the same pod, reformatted
kind: Pod
spec:
  containers:
    - command:
        - "sleep"
        - %q   # same argument
      name: c
      image: '%s'
  terminationGracePeriodSeconds: 1
apiVersion: v1
metadata:
  name: %s
`, arg, image, name)
}

// mfTypo is mfPod with a misspelt field: it no longer decodes.
func mfTypo(name, image, arg string) string {
	return strings.Replace(mfPod(name, image, arg), "spec:\n", "spec:\n  restartPolcy: Always\n", 1)
}

// mfRunning waits until every container of the pod runs and returns the
// pod and the host PID of its container c.
func mfRunning(a *rootAgent, key string) (*corev1.Pod, int) {
	a.t.Helper()
	pod := a.waitPod(key, "running", 30*time.Second, running)
	return pod, a.mainPID(pod, "c")
}

// mfReplaced waits until the pod runs with a UID other than old (edit) and
// the process old ran as is gone, and returns the new pod and its PID.
func mfReplaced(a *rootAgent, key string, old types.UID, oldPID int) (*corev1.Pod, int) {
	a.t.Helper()
	pod := a.waitPod(key, "replaced", 30*time.Second, func(p *corev1.Pod) error {
		if p.UID == old {
			return fmt.Errorf("still UID %s", old)
		}
		return running(p)
	})
	mfWaitExited(a, oldPID)
	for _, p := range a.pods() {
		if p.UID == old {
			a.t.Errorf("old pod %s/%s %s still listed after its process exited", p.Namespace, p.Name, old)
		}
	}
	return pod, a.mainPID(pod, "c")
}

// mfWaitExited waits until the process pid has gone.
func mfWaitExited(a *rootAgent, pid int) {
	a.t.Helper()
	a.eventually(fmt.Sprintf("process %d to exit", pid), 30*time.Second, func() error {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			return errors.New("still running")
		}
		return nil
	})
}

// mfWaitGone waits until the agent no longer lists key and pid has gone.
func mfWaitGone(a *rootAgent, key string, pid int) {
	a.t.Helper()
	a.eventually(key+" gone", 30*time.Second, func() error {
		if p := a.pod(key); p != nil {
			return fmt.Errorf("still listed, phase %s", p.Status.Phase)
		}
		return nil
	})
	mfWaitExited(a, pid)
}

// mfSteady checks, for a short while, that key keeps running as uid with
// main process pid and is not being deleted. It gives a wrong teardown
// the time to show; it asserts nothing about how fast anything happens.
func mfSteady(a *rootAgent, key string, uid types.UID, pid int) {
	a.t.Helper()
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		p := a.pod(key)
		switch {
		case p == nil:
			a.t.Fatalf("%s is gone; it should keep running", key)
		case p.UID != uid || p.DeletionTimestamp != nil:
			a.t.Fatalf("%s was replaced or is being deleted (uid %s, want %s; deletion %v)", key, p.UID, uid, p.DeletionTimestamp)
		}
		if got := mfMainPIDNow(a, uid, "c"); got != pid {
			a.t.Fatalf("%s: main process is %d, want %d still running", key, got, pid)
		}
	}
}

// mfMainPIDNow returns the host PID of the process that is PID 1 in
// container c of pod uid, or 0 if there is none right now.
func mfMainPIDNow(a *rootAgent, uid types.UID, container string) int {
	for _, pid := range a.containerPIDs(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}}, container) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				return pid
			}
		}
	}
	return 0
}

// mfLogLines returns the agent's JSON log lines with message msg, from
// byte offset from of the log on.
func mfLogLines(a *rootAgent, from int, msg string) []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(a.log.String()[from:]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			lines = append(lines, line)
		}
	}
	return lines
}

// mfRejected waits for the agent to log that it rejected file with an
// error that mentions every one of want, and returns that error.
func mfRejected(a *rootAgent, file string, want ...string) string {
	a.t.Helper()
	var msg string
	a.eventually("manifest rejected: "+filepath.Base(file), 20*time.Second, func() error {
		for _, l := range mfLogLines(a, 0, "manifest rejected") {
			if l["file"] != file {
				continue
			}
			msg, _ = l["err"].(string)
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(msg, w) }) {
				return nil
			}
		}
		return fmt.Errorf("no such log line (last error for the file: %q)", msg)
	})
	return msg
}

// mfScrape returns the agent's /metrics page.
func mfScrape(a *rootAgent) string {
	a.t.Helper()
	resp, err := http.Get(a.metrics + "/metrics")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// mfSample returns the value of one series ("name{labels}") on a /metrics
// page, and whether it is there.
func mfSample(page, series string) (float64, bool) {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// mfWaitSample waits until series is on /metrics with a value of at least
// min.
func mfWaitSample(a *rootAgent, series string, min float64) {
	a.t.Helper()
	a.eventually(series, 10*time.Second, func() error {
		if v, ok := mfSample(mfScrape(a), series); !ok || v < min {
			return fmt.Errorf("got %v (present %v), want >= %v", v, ok, min)
		}
		return nil
	})
}

// mfHealthy fails unless /healthz answers 200 and the agent still runs.
func mfHealthy(a *rootAgent) {
	a.t.Helper()
	select {
	case <-a.done:
		a.t.Fatal("the agent exited")
	default:
	}
	resp, err := http.Get(a.metrics + "/healthz")
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("/healthz: %s", resp.Status)
	}
}

// mfWriteFile writes a file into the manifest directory atomically, with
// the given mode already set when it appears under its name.
func mfWriteFile(a *rootAgent, name string, data []byte, mode fs.FileMode) string {
	a.t.Helper()
	path := filepath.Join(a.cfg.Manifests, name)
	tmp := filepath.Join(a.cfg.Manifests, ".mf-tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		a.t.Fatal(err)
	}
	return path
}

// mfSyncSource makes sure the source has scanned everything written so far:
// every scan reads the whole directory, so once a file written now is
// reported, the scan saw all earlier changes too. The marker file is
// removed again.
func mfSyncSource(a *rootAgent) {
	a.t.Helper()
	name := "zz-sync-" + randomHex(a.t, 4) + ".yaml"
	path := mfWriteFile(a, name, []byte("marker: not a pod\n"), 0o644)
	mfRejected(a, path)
	a.removeManifest(name)
}

// mfFreeAddr returns a loopback address with a port that was free a moment
// ago, for an agent that must keep its metrics address across restarts.
func mfFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestManifestEditLifecycle follows one file through its life: drop it and
// the pod runs; reformat it or rename it and nothing restarts; edit it and
// the pod is replaced; break it and the pod keeps running while the error is
// reported in the log, in /metrics and by `peapod validate`; fix it and the
// pod is updated; delete it and the pod goes.
func TestManifestEditLifecycle(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	const key = "default/web"

	a.writeManifest("web.yaml", mfPod("web", a.Image, "100000"))
	pod, pid := mfRunning(a, key)

	// A reformat decodes to the same pod: same UID, same process.
	a.writeManifest("web.yaml", mfPodReformatted("web", a.Image, "100000"))
	mfSyncSource(a)
	mfSteady(a, key, pod.UID, pid)

	// A rename moves the pod to another file without restarting it.
	if err := os.Rename(filepath.Join(a.cfg.Manifests, "web.yaml"), filepath.Join(a.cfg.Manifests, "site.yaml")); err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(a.cfg.Manifests, "site.yaml")
	mfSyncSource(a)
	mfSteady(a, key, pod.UID, pid)

	// An edit is a new pod: the old processes stop, a new UID runs.
	a.writeManifest("site.yaml", mfPod("web", a.Image, "100001"))
	pod, pid = mfReplaced(a, key, pod.UID, pid)

	// An edit that no longer decodes leaves the pod running and is reported.
	a.writeManifest("site.yaml", mfTypo("web", a.Image, "100002"))
	mfRejected(a, site, "site.yaml", "spec.restartPolcy", "unknown field")
	mfWaitSample(a, fmt.Sprintf("peapod_manifest_errors_total{file=%q}", site), 1)
	mfSteady(a, key, pod.UID, pid)
	out, code := runPeapod(t, "validate", site)
	if code != 1 || !strings.Contains(out, "site.yaml") || !strings.Contains(out, "spec.restartPolcy") {
		t.Errorf("peapod validate on the broken file: exit %d, want 1 naming the file and spec.restartPolcy:\n%s", code, out)
	}
	// ps lists the rejected file, and the pod kept from it, below the pods.
	out, code = runPeapod(t, "ps", "--state", a.cfg.State)
	if code != 0 || !strings.Contains(out, "1 manifest file(s) rejected") || !strings.Contains(out, "spec.restartPolcy") ||
		!strings.Contains(out, "kept running: [default/web]") {
		t.Errorf("peapod ps with a rejected file: exit %d, want the file and the kept pod listed:\n%s", code, out)
	}

	// Fixing it (with a change) updates the pod; the error clears.
	a.writeManifest("site.yaml", mfPod("web", a.Image, "100002"))
	pod, pid = mfReplaced(a, key, pod.UID, pid)
	a.eventually("manifest error cleared", 10*time.Second, func() error {
		if _, ok := mfSample(mfScrape(a), fmt.Sprintf("peapod_manifest_file_invalid{file=%q}", site)); ok {
			return errors.New("peapod_manifest_file_invalid still set")
		}
		return nil
	})

	a.removeManifest("site.yaml")
	mfWaitGone(a, key, pid)
	mfHealthy(a)
}

// TestManifestWarningsLogged checks that the agent logs, once, the warnings
// that `peapod validate` prints for a manifest it admits.
func TestManifestWarningsLogged(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	since := len(a.log.String())
	a.writeManifest("warn.yaml", mfPod("warn", a.Image, "100000")+"  priorityClassName: high\n")
	if got := a.waitLogField(since, "manifest warning", "warning"); !strings.Contains(got, "spec.priorityClassName: ignored") {
		t.Errorf("logged warning %q, want spec.priorityClassName ignored", got)
	}
	_, pid := mfRunning(a, "default/warn")
	out, code := runPeapod(t, "validate", filepath.Join(a.cfg.Manifests, "warn.yaml"))
	if code != 0 || !strings.Contains(out, "spec.priorityClassName: ignored") {
		t.Errorf("peapod validate: exit %d, want 0 with the same warning:\n%s", code, out)
	}
	a.removeManifest("warn.yaml")
	mfWaitGone(a, "default/warn", pid)
	if n := strings.Count(a.log.String()[since:], "spec.priorityClassName"); n != 1 {
		t.Errorf("the warning was logged %d times, want once", n)
	}
}

// TestManifestBadInput drops every kind of bad file next to a running pod:
// each is reported (editor files are ignored), the pod carries on and the
// agent stays healthy.
func TestManifestBadInput(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("web.yaml", mfPod("web", a.Image, "100000"))
	pod, pid := mfRunning(a, "default/web")

	// Editor leftovers holding a valid pod: never read, never reported.
	// Written first, so the scan that reports the bad files below saw them.
	editorFiles := []string{".web.yaml.swp", "web.yaml~", "web.yaml.swp", "web.yaml.bak", "#web.yaml#"}
	for _, name := range editorFiles {
		mfWriteFile(a, name, []byte(mfPod("editor", a.Image, "1")), 0o644)
	}

	garbage := make([]byte, 4096)
	rand.Read(garbage)
	pad := "# padding to push the file over the size limit\n"
	huge := mfPod("huge", a.Image, "1") + strings.Repeat(pad, (1<<20)/len(pad)+1)
	bad := []struct {
		name string
		data []byte
		mode fs.FileMode
		want []string // in the logged error
	}{
		{"invalid.yaml", []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: [\n"), 0o644, []string{"yaml"}},
		{"garbage.yaml", garbage, 0o644, nil},
		{"huge.yaml", []byte(huge), 0o644, []string{"1 MiB"}},
		{"unknown.yaml", []byte(strings.Replace(mfPod("unknown", a.Image, "1"), "containers:", "contianers:", 1)), 0o644, []string{"spec.contianers", "unknown field"}},
		{"deploy.yaml", []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"), 0o644, []string{"Deployment"}},
		{"writable.yaml", []byte(mfPod("writable", a.Image, "1")), 0o666, []string{"refusing", "chmod go-w"}},
	}
	var files []string
	for _, b := range bad {
		files = append(files, mfWriteFile(a, b.name, b.data, b.mode))
	}
	passwd := filepath.Join(a.cfg.Manifests, "passwd.yaml")
	if err := os.Symlink("/etc/passwd", passwd); err != nil {
		t.Fatal(err)
	}
	files = append(files, passwd)

	for i, b := range bad {
		mfRejected(a, files[i], b.want...)
	}
	mfRejected(a, passwd)
	page := mfScrape(a)
	for _, f := range files {
		if v, ok := mfSample(page, fmt.Sprintf("peapod_manifest_errors_total{file=%q}", f)); !ok || v < 1 {
			t.Errorf("/metrics: no peapod_manifest_errors_total for %s", filepath.Base(f))
		}
	}
	for _, name := range editorFiles {
		if strings.Contains(a.log.String(), name) || strings.Contains(page, name) {
			t.Errorf("editor file %s was read: it appears in the log or /metrics", name)
		}
	}

	mfSteady(a, "default/web", pod.UID, pid)
	var keys []string
	for _, p := range a.pods() {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	if !slices.Equal(keys, []string{"default/web"}) {
		t.Errorf("pods = %v, want only default/web", keys)
	}
	mfHealthy(a)
}

// TestManifestDuplicatePod defines one pod in two files: the file whose name
// sorts first wins, whichever came first, the other is reported, and
// removing the winner hands the pod to the other file.
func TestManifestDuplicatePod(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	const key = "default/dup"
	first, second := filepath.Join(a.cfg.Manifests, "a-dup.yaml"), filepath.Join(a.cfg.Manifests, "b-dup.yaml")
	fromFile := func(want string) func(*corev1.Pod) error {
		return func(p *corev1.Pod) error {
			if got := p.Annotations["peapod.io/manifest"]; got != want {
				return fmt.Errorf("pod from %s, want %s", got, want)
			}
			return running(p)
		}
	}

	// The later name comes first and runs until the earlier name appears.
	a.writeManifest("b-dup.yaml", mfPod("dup", a.Image, "200000"))
	podB, pidB := mfRunning(a, key)
	a.writeManifest("a-dup.yaml", mfPod("dup", a.Image, "100000"))
	podA := a.waitPod(key, "from a-dup.yaml", 30*time.Second, fromFile(first))
	pidA := a.mainPID(podA, "c")
	mfWaitExited(a, pidB)
	mfRejected(a, second, "already defined in", "a-dup.yaml")
	mfSteady(a, key, podA.UID, pidA)

	a.removeManifest("a-dup.yaml")
	podB2 := a.waitPod(key, "from b-dup.yaml", 30*time.Second, fromFile(second))
	if podB2.UID != podB.UID {
		t.Errorf("b-dup.yaml's pod has UID %s, was %s: same content must give the same UID", podB2.UID, podB.UID)
	}
	mfWaitExited(a, pidA)
	a.mainPID(podB2, "c")
	mfHealthy(a)
}

// TestManifestDirectoryVanishes renames the manifest directory away and
// back: its pods stop while it is missing, as kubelet's would, and start
// again when it returns; the agent stays up throughout.
func TestManifestDirectoryVanishes(t *testing.T) {
	a := newRootAgent(t)
	dir, away := a.cfg.Manifests, a.cfg.Manifests+".away"
	t.Cleanup(func() { // before the agent's teardown, which needs the directory
		if _, err := os.Stat(away); err == nil {
			os.Rename(away, dir)
		}
	})
	a.start()
	a.writeManifest("web.yaml", mfPod("web", a.Image, "100000"))
	pod, pid := mfRunning(a, "default/web")

	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	mfWaitGone(a, "default/web", pid)
	mfRejected(a, dir, "does not exist")
	mfHealthy(a)

	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	back, _ := mfRunning(a, "default/web")
	if back.UID != pod.UID {
		t.Errorf("pod came back as UID %s, want %s", back.UID, pod.UID)
	}
	mfHealthy(a)
}

// TestManifestDirectoryRefused makes the manifest directory writable by
// others, an operator's slip: the agent refuses it, says so, and keeps the
// pod running; the fix brings nothing down either.
func TestManifestDirectoryRefused(t *testing.T) {
	a := newRootAgent(t)
	dir := a.cfg.Manifests
	t.Cleanup(func() { os.Chmod(dir, 0o755) }) // before the agent's teardown
	a.start()
	a.writeManifest("web.yaml", mfPod("web", a.Image, "100000"))
	pod, pid := mfRunning(a, "default/web")

	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	mfRejected(a, dir, "chmod go-w")
	mfSteady(a, "default/web", pod.UID, pid)
	out, _ := runPeapod(t, "ps", "--state", a.cfg.State)
	if !strings.Contains(out, "kept running: [default/web]") {
		t.Errorf("peapod ps does not say the pod is kept:\n%s", out)
	}

	// An agent restarted meanwhile keeps it too.
	a.stop(syscall.SIGTERM)
	a.start()
	mfRejected(a, dir, "chmod go-w")
	mfSteady(a, "default/web", pod.UID, pid)

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mfSyncSource(a)
	mfSteady(a, "default/web", pod.UID, pid)
	mfHealthy(a)
}

// TestManifestDataSymlinkSwap lays the directory out as Kubernetes' atomic
// writer does for a ConfigMap volume and swaps "..data" to an edited copy:
// the pod is replaced.
func TestManifestDataSymlinkSwap(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	dir := a.cfg.Manifests
	version := func(name, arg string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "web.yaml"), []byte(mfPod("web", a.Image, arg)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_29_01", "100000")
	for _, l := range [][2]string{{"..2026_11_29_01", "..data"}, {"..data/web.yaml", "web.yaml"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	pod, pid := mfRunning(a, "default/web")

	// The atomic writer's swap: new directory, new link, rename over ..data.
	version("..2026_11_29_02", "100001")
	if err := os.Symlink("..2026_11_29_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_11_29_01")); err != nil {
		t.Fatal(err)
	}
	mfReplaced(a, "default/web", pod.UID, pid)
	mfHealthy(a)
}

// TestManifestBrokenAtAgentStart restarts the agent while the manifest of a
// running pod is broken: with no last good version in memory, the agent
// still keeps the pod it finds running from that file.
func TestManifestBrokenAtAgentStart(t *testing.T) {
	a := newRootAgent(t, "--metrics-addr", mfFreeAddr(t)) // same address after the restart
	a.start()
	a.writeManifest("web.yaml", mfPod("web", a.Image, "100000"))
	pod, pid := mfRunning(a, "default/web")

	a.stop(syscall.SIGTERM)
	a.writeManifest("web.yaml", mfTypo("web", a.Image, "100000"))
	from := len(a.log.String())
	a.start()

	mfRejected(a, filepath.Join(a.cfg.Manifests, "web.yaml"), "spec.restartPolcy")
	a.waitPod("default/web", "adopted and running", 30*time.Second, func(p *corev1.Pod) error {
		if p.UID != pod.UID {
			return fmt.Errorf("UID %s, want %s", p.UID, pod.UID)
		}
		return running(p)
	})
	mfSteady(a, "default/web", pod.UID, pid)
	if removed := mfLogLines(a, from, "removing pod"); len(removed) > 0 {
		t.Errorf("the restarted agent removed pods: %v", removed)
	}
	mfHealthy(a)
}

// TestManifestPsAndStartLatency runs a two-container pod five times, timing
// each from the manifest's rename to both main processes running, and
// checks `peapod ps` in its three formats on the first.
func TestManifestPsAndStartLatency(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	var took []time.Duration
	for i := range 5 {
		manifest := strings.Replace(twoContainerPod("lat", a.Image), "terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 1", 1)
		manifest = strings.ReplaceAll(manifest, `"100000"`, strconv.Quote(strconv.Itoa(100000+i)))
		// The UID is the content hash, so validate tells it before the drop.
		check := mfWriteFile(a, ".lat.check", []byte(manifest), 0o644)
		out, code := runPeapod(t, "validate", check)
		os.Remove(check)
		_, uid, ok := strings.Cut(strings.TrimSpace(out), "(uid ")
		if code != 0 || !ok {
			t.Fatalf("peapod validate: exit %d:\n%s", code, out)
		}
		uid = strings.TrimSuffix(uid, ")")

		start := time.Now()
		a.writeManifest("lat.yaml", manifest)
		var pids [2]int
		a.eventually("both main processes", 30*time.Second, func() error {
			pids = [2]int{mfMainPIDNow(a, types.UID(uid), "a"), mfMainPIDNow(a, types.UID(uid), "b")}
			if pids[0] == 0 || pids[1] == 0 {
				return fmt.Errorf("main PIDs %v", pids)
			}
			return nil
		})
		took = append(took, time.Since(start))

		pod := a.waitPod("default/lat", "running", 30*time.Second, running)
		if i == 0 {
			mfCheckPs(a, pod)
		}
		a.removeManifest("lat.yaml")
		mfWaitGone(a, "default/lat", pids[0])
		mfWaitExited(a, pids[1])
	}
	slices.Sort(took)
	page := mfScrape(a)
	sum, _ := mfSample(page, "peapod_pod_start_duration_seconds_sum")
	n, _ := mfSample(page, "peapod_pod_start_duration_seconds_count")
	t.Logf("manifest rename -> both main processes running, two-container pod: median %v (min %v, max %v); agent histogram: %v pods, mean %.3fs",
		took[2].Round(time.Millisecond), took[0].Round(time.Millisecond), took[4].Round(time.Millisecond), n, sum/max(n, 1))
}

// mfCheckPs checks `peapod ps` as a table, as JSON and as YAML against the
// running two-container pod.
func mfCheckPs(a *rootAgent, pod *corev1.Pod) {
	t := a.t
	t.Helper()
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil {
		t.Fatalf("pod IP %q: %v", pod.Status.PodIP, err)
	}
	out, code := runPeapod(t, "ps", "--state", a.cfg.State)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("peapod ps: exit %d, want a header and one row:\n%s", code, out)
	}
	if got, want := strings.Fields(lines[0]), []string{"NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"}; !slices.Equal(got, want) {
		t.Errorf("peapod ps header = %v, want %v", got, want)
	}
	row := strings.Fields(lines[1])
	if len(row) != 7 || row[0] != "default" || row[1] != "lat" || row[2] != "2/2" || row[3] != "Running" || row[4] != "0" || row[6] != ip.String() {
		t.Errorf("peapod ps row = %q, want default lat 2/2 Running 0 <age> %s", lines[1], ip)
	}
	if !a.PodCIDR.Contains(ip) {
		t.Errorf("pod IP %s is outside the pod CIDR %s", ip, a.PodCIDR)
	}

	for _, format := range []string{"json", "yaml"} {
		out, code := runPeapod(t, "ps", "--state", a.cfg.State, "-o", format)
		var list corev1.PodList
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(out), &list)
		} else {
			err = yaml.UnmarshalStrict([]byte(out), &list)
		}
		if code != 0 || err != nil {
			t.Fatalf("peapod ps -o %s: exit %d, decode: %v\n%s", format, code, err, out)
		}
		if list.Kind != "PodList" || list.APIVersion != "v1" || len(list.Items) != 1 {
			t.Fatalf("peapod ps -o %s: %s %s with %d items, want a v1 PodList of one", format, list.APIVersion, list.Kind, len(list.Items))
		}
		p := list.Items[0]
		if p.Name != "lat" || p.UID != pod.UID || p.Status.Phase != corev1.PodRunning || p.Status.PodIP != ip.String() {
			t.Errorf("peapod ps -o %s: pod %s uid %s phase %s IP %s, want lat %s Running %s", format, p.Name, p.UID, p.Status.Phase, p.Status.PodIP, pod.UID, ip)
		}
		if err := running(&p); err != nil {
			t.Errorf("peapod ps -o %s: containerStatuses: %v", format, err)
		}
		// What a kubelet's node adds, which tools reading /pods expect.
		host, _ := os.Hostname()
		if p.Spec.NodeName != strings.ToLower(host) || p.CreationTimestamp.IsZero() {
			t.Errorf("peapod ps -o %s: nodeName %q, creationTimestamp %v; want %q and a time", format, p.Spec.NodeName, p.CreationTimestamp, host)
		}
		if hostIP, err := netip.ParseAddr(p.Status.HostIP); err != nil || len(p.Status.HostIPs) == 0 || p.Status.HostIPs[0].IP != p.Status.HostIP {
			t.Errorf("peapod ps -o %s: hostIP %q, hostIPs %v; want the host's address (%v)", format, p.Status.HostIP, p.Status.HostIPs, err)
		} else if a.PodCIDR.Contains(hostIP) {
			t.Errorf("peapod ps -o %s: hostIP %s is a pod address", format, hostIP)
		}
	}
}
