package main

// End-to-end acceptance of cgroups and metrics: limits land in the cgroup
// files, the kernel enforces them (CPU throttling, OOM kill, pids limit), and
// /metrics reports it in a form promtool and a real Prometheus server accept.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
)

// cgPod is a one-container pod manifest; resources and extra spec lines are
// YAML already indented for their place.
func cgPod(name, image, command, resources, extraSpec string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
%s  containers:
  - name: %s
    image: %q
    command: %s
%s`, name, extraSpec, name, image, command, resources)
}

// cgSleep is the command of a container that idles.
const cgSleep = `[sleep, "100000"]`

// cgReadFile returns a cgroup (or /proc) file's content without the
// trailing newline, failing the test if it cannot be read.
func cgReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cgV2 reports whether the host has only the unified cgroup hierarchy
// (cgroup v2 at /sys/fs/cgroup itself); otherwise limits are in v1.
func cgV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgDir is the directory of rel (relative to the agent's cgroup parent) in
// the hierarchy of a v1 controller, or in the unified hierarchy on v2.
func (a *rootAgent) cgDir(controller, rel string) string {
	if cgV2() {
		controller = ""
	}
	return filepath.Join("/sys/fs/cgroup", controller, a.CgroupParent, rel)
}

// cgScrape is one GET /metrics: the body, its parsed families and how long
// the request took.
type cgScrape struct {
	body     []byte
	families map[string]*dto.MetricFamily
	took     time.Duration
}

// scrapeMetrics fetches and parses the agent's /metrics.
func (a *rootAgent) scrapeMetrics() cgScrape {
	a.t.Helper()
	start := time.Now()
	resp, err := http.Get(a.metrics + "/metrics")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		a.t.Fatalf("GET /metrics: status %d, %v", resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		a.t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return cgScrape{body: body, families: fams, took: took}
}

// value returns the value of the first series of name whose labels include
// every pair of want (a counter, gauge, untyped value or a histogram's
// sample count) and whether there was one.
func (s cgScrape) value(name string, want ...string) (float64, bool) {
	fam := s.families[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if cgHasLabels(m, want) {
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			case m.Untyped != nil:
				return m.Untyped.GetValue(), true
			}
		}
	}
	return 0, false
}

// cgHasLabels reports whether m has every name=value pair in want.
func cgHasLabels(m *dto.Metric, want []string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(want); i += 2 {
		if v, ok := have[want[i]]; !ok || v != want[i+1] {
			return false
		}
	}
	return true
}

// cgPodSeries counts the series, in any family, labelled pod=name.
func (s cgScrape) podSeries(name string) int {
	n := 0
	for _, fam := range s.families {
		for _, m := range fam.GetMetric() {
			if cgHasLabels(m, []string{"pod", name}) {
				n++
			}
		}
	}
	return n
}

// TestMetricsCgroupLimits checks that a pod's resources reach the cgroup
// files as kubelet would write them: per container (memory limit, CFS quota
// over a 100 ms period, shares from the request or else the limit), the sums
// at pod level, pids.max from --pod-pids-limit, and that each container's
// main process is in its own cgroups.
func TestMetricsCgroupLimits(t *testing.T) {
	a := newRootAgent(t, "--pod-pids-limit", "200")
	a.start()
	a.writeManifest("limits.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: limits}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: %[1]q
    command: %[2]s
    resources:
      limits: {memory: 64Mi, cpu: 250m}
      requests: {cpu: 100m}
  - name: b
    image: %[1]q
    command: %[2]s
    resources:
      limits: {memory: 32Mi, cpu: 500m}
`, a.Image, cgSleep))
	pod := a.waitPod("default/limits", "running", 30*time.Second, running)
	podRel := "pod" + string(pod.UID)

	// v2 gets the same values converted: cpu.max is "quota period" and
	// cpu.weight maps shares [2, 262144] linearly onto [1, 10000].
	want := []struct {
		rel, controller, v1file, v1value, v2file, v2value string
	}{
		{podRel + "/a", "memory", "memory.limit_in_bytes", "67108864", "memory.max", "67108864"},
		{podRel + "/a", "cpu", "cpu.cfs_quota_us", "25000", "cpu.max", "25000 100000"},
		{podRel + "/a", "cpu", "cpu.cfs_period_us", "100000", "", ""},
		{podRel + "/a", "cpu", "cpu.shares", "102", "cpu.weight", "4"},
		// No request: it defaults to the limit, 500m → 512 shares.
		{podRel + "/b", "memory", "memory.limit_in_bytes", "33554432", "memory.max", "33554432"},
		{podRel + "/b", "cpu", "cpu.cfs_quota_us", "50000", "cpu.max", "50000 100000"},
		{podRel + "/b", "cpu", "cpu.shares", "512", "cpu.weight", "20"},
		// Pod: 96Mi, 750m of quota, (100m+500m) → 614 shares.
		{podRel, "memory", "memory.limit_in_bytes", "100663296", "memory.max", "100663296"},
		{podRel, "cpu", "cpu.cfs_quota_us", "75000", "cpu.max", "75000 100000"},
		{podRel, "cpu", "cpu.cfs_period_us", "100000", "", ""},
		{podRel, "cpu", "cpu.shares", "614", "cpu.weight", "24"},
		{podRel, "pids", "pids.max", "200", "pids.max", "200"},
	}
	for _, w := range want {
		file, value := w.v1file, w.v1value
		if cgV2() {
			file, value = w.v2file, w.v2value
		}
		if file == "" {
			continue
		}
		if got := cgReadFile(t, filepath.Join(a.cgDir(w.controller, w.rel), file)); got != value {
			t.Errorf("%s/%s = %s, want %s", w.rel, file, got, value)
		}
	}

	for _, ctr := range []string{"a", "b"} {
		pid := a.mainPID(pod, ctr)
		wantPath := "/" + filepath.Join(a.CgroupParent, podRel, ctr)
		found := map[string]string{}
		for _, line := range strings.Split(cgReadFile(t, fmt.Sprintf("/proc/%d/cgroup", pid)), "\n") {
			// hierarchy-ID:controller-list:path
			f := strings.SplitN(line, ":", 3)
			if len(f) != 3 {
				continue
			}
			for _, c := range strings.Split(f[1], ",") {
				found[c] = f[2]
			}
		}
		controllers := []string{"memory", "cpu", "cpuacct", "pids", "freezer"}
		if cgV2() {
			controllers = []string{""} // the single line 0::/path
		}
		for _, c := range controllers {
			if found[c] != wantPath {
				t.Errorf("container %s: main process %d is in %s cgroup %q, want %q", ctr, pid, c, found[c], wantPath)
			}
		}
	}
}

// TestMetricsCPUThrottling runs a busy loop under a 200m CPU limit and
// checks through /metrics that its CPU usage grows between two scrapes and
// that the CFS throttling counters appear and count.
func TestMetricsCPUThrottling(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("burn.yaml", cgPod("burn", a.Image, `[sh, -c, "while :; do :; done"]`,
		"    resources: {limits: {cpu: 200m, memory: 32Mi}}\n", ""))
	a.waitPod("default/burn", "running", 30*time.Second, running)

	series := []string{"pod", "burn", "container", "burn"}
	var first float64
	a.eventually("CPU usage of burn/burn in /metrics", 10*time.Second, func() error {
		var ok bool
		if first, ok = a.scrapeMetrics().value("container_cpu_usage_seconds_total", series...); !ok {
			return fmt.Errorf("no container_cpu_usage_seconds_total for burn/burn")
		}
		return nil
	})
	a.eventually("CPU usage and throttling growing", 30*time.Second, func() error {
		s := a.scrapeMetrics()
		usage, _ := s.value("container_cpu_usage_seconds_total", series...)
		periods, _ := s.value("container_cpu_cfs_periods_total", series...)
		throttled, ok := s.value("container_cpu_cfs_throttled_periods_total", series...)
		throttledSecs, _ := s.value("container_cpu_cfs_throttled_seconds_total", series...)
		quota, _ := s.value("container_spec_cpu_quota", series...)
		if !ok || usage <= first || periods == 0 || throttled == 0 || throttledSecs == 0 {
			return fmt.Errorf("usage %v (first %v), cfs periods %v, throttled %v periods (present %v), %v s",
				usage, first, periods, throttled, ok, throttledSecs)
		}
		if quota != 20000 {
			t.Errorf("container_spec_cpu_quota = %v, want 20000", quota)
		}
		return nil
	})
}

// TestMetricsOOMKilled runs containers that allocate 64 MiB under a 32 MiB
// limit. With restartPolicy Never the container is reported terminated with
// reason OOMKilled and exit code 137, and the pod's series counts the kill
// in container_oom_events_total. With restartPolicy Always (allocating only
// on the first attempt) the restarted container shows the kill in lastState
// and its own series keeps counting it across attempts.
func TestMetricsOOMKilled(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	// dd's 64 MiB buffer is filled from /dev/zero: real, touched memory.
	a.writeManifest("oom.yaml", cgPod("oom", a.Image, `[dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]`,
		"    resources: {limits: {memory: 32Mi}}\n", "  restartPolicy: Never\n"))
	a.writeManifest("again.yaml", cgPod("again", a.Image,
		`[sh, -c, "[ -e /state/done ] || { touch /state/done; exec dd if=/dev/zero of=/dev/null bs=64M count=1; }; exec sleep 100000"]`,
		"    resources: {limits: {memory: 32Mi}}\n    volumeMounts: [{name: state, mountPath: /state}]\n",
		"  volumes: [{name: state, emptyDir: {}}]\n"))

	pod := a.waitPod("default/oom", "terminated", 30*time.Second, func(p *corev1.Pod) error {
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
			return fmt.Errorf("not terminated: %+v", p.Status.ContainerStatuses)
		}
		return nil
	})
	if term := pod.Status.ContainerStatuses[0].State.Terminated; term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("oom: terminated with reason %q, exit code %d; want OOMKilled, 137", term.Reason, term.ExitCode)
	}
	if pod.Status.Phase != corev1.PodFailed {
		t.Errorf("oom: pod phase %s, want Failed", pod.Status.Phase)
	}
	// The container has exited, so it has no series of its own; the pod
	// cgroup's counter includes its containers'.
	a.eventually("oom: kill in the pod's container_oom_events_total", 10*time.Second, func() error {
		n, ok := a.scrapeMetrics().value("container_oom_events_total", "pod", "oom", "container", "")
		if !ok || n != 1 {
			return fmt.Errorf("container_oom_events_total{pod=oom,container=\"\"} = %v (present %v), want 1", n, ok)
		}
		return nil
	})

	// The first restart comes after a 10 s back-off.
	again := a.waitPod("default/again", "restarted", 40*time.Second, func(p *corev1.Pod) error {
		if err := running(p); err != nil {
			return err
		}
		if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 1 {
			return fmt.Errorf("restartCount %d", cs.RestartCount)
		}
		return nil
	})
	if last := again.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.Reason != "OOMKilled" || last.ExitCode != 137 {
		t.Errorf("again: lastState.terminated = %+v, want reason OOMKilled, exit code 137", last)
	}
	a.eventually("again: kill in the container's container_oom_events_total", 10*time.Second, func() error {
		n, ok := a.scrapeMetrics().value("container_oom_events_total", "pod", "again", "container", "again")
		if !ok || n != 1 {
			return fmt.Errorf("container_oom_events_total{pod=again,container=again} = %v (present %v), want 1", n, ok)
		}
		return nil
	})
}

// TestMetricsForkBomb runs a fork bomb under --pod-pids-limit 64: the pod
// never holds more than 64 tasks, the limit is hit, and meanwhile the agent
// answers (healthz, /metrics, `peapod ps`), a neighbour keeps running and a
// new pod starts. Removing the manifest tears the bomb down.
func TestMetricsForkBomb(t *testing.T) {
	a := newRootAgent(t, "--pod-pids-limit", "64")
	a.start()
	a.writeManifest("calm.yaml", cgPod("calm", a.Image, cgSleep, "", ""))
	calm := a.waitPod("default/calm", "running", 30*time.Second, running)
	calmPID := a.mainPID(calm, "calm")

	// busybox sh refuses ":" as a function name, hence "b". PID 1 execs
	// sleep so the container lives on when forks start failing; the CPU
	// limit keeps the bomb from hogging the shared machine.
	a.writeManifest("bomb.yaml", cgPod("bomb", a.Image, `[sh, -c, "b(){ b|b& }; b; exec sleep 100000"]`,
		"    resources: {limits: {cpu: 500m}}\n", ""))
	bomb := a.waitPod("default/bomb", "running", 30*time.Second, running)
	podDir := a.cgDir("pids", "pod"+string(bomb.UID))
	a.eventually("the bomb to hit pids.max", 30*time.Second, func() error {
		if cur, _ := strconv.Atoi(cgReadFile(t, filepath.Join(podDir, "pids.current"))); cur > 64 {
			t.Fatalf("pids.current = %d over pids.max 64", cur)
		}
		// On v1 the failed fork is counted where the forking task lives,
		// in the container's cgroup; count both levels.
		events := cgReadFile(t, filepath.Join(podDir, "pids.events")) + "\n" +
			cgReadFile(t, filepath.Join(podDir, "bomb", "pids.events"))
		for _, line := range strings.Split(events, "\n") {
			if n, ok := strings.CutPrefix(line, "max "); ok && n != "0" {
				t.Logf("bomb pod: pids.current %s; pids.events pod, container: %q",
					cgReadFile(t, filepath.Join(podDir, "pids.current")), events)
				return nil
			}
		}
		return fmt.Errorf("pids.events: %q", events)
	})

	resp, err := http.Get(a.metrics + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz during the bomb: status %d", resp.StatusCode)
	}
	if n, ok := a.scrapeMetrics().value("container_threads", "pod", "bomb", "container", ""); !ok || n > 64 {
		t.Errorf("container_threads{pod=bomb} during the bomb = %v (present %v), want at most 64", n, ok)
	}
	out, code := runPeapod(t, "ps", "--state", a.cfg.State)
	if code != 0 || !strings.Contains(out, "calm") || !strings.Contains(out, "bomb") {
		t.Errorf("peapod ps during the bomb: exit %d\n%s", code, out)
	}
	a.writeManifest("late.yaml", cgPod("late", a.Image, cgSleep, "", ""))
	a.waitPod("default/late", "running", 30*time.Second, running)

	a.removeManifest("bomb.yaml")
	a.eventually("bomb torn down", 30*time.Second, func() error {
		if a.pod("default/bomb") != nil {
			return fmt.Errorf("still listed")
		}
		if dirs := cgroupDirs(filepath.Join(a.CgroupParent, "pod"+string(bomb.UID))); len(dirs) > 0 {
			return fmt.Errorf("cgroups left: %v", dirs)
		}
		return nil
	})
	calm = a.waitPod("default/calm", "running", time.Second, running)
	if cs := calm.Status.ContainerStatuses[0]; cs.RestartCount != 0 || a.mainPID(calm, "calm") != calmPID {
		t.Errorf("calm was restarted during the bomb: restartCount %d", cs.RestartCount)
	}
}

// TestMetricsEndpoint checks /metrics as a whole with two pods running and
// a broken manifest: the agent's own series and the Go and process
// collectors are there, promtool accepts the output, a Prometheus server
// scrapes it and answers a PromQL query with a pod's working set, and a
// deleted pod's series go.
func TestMetricsEndpoint(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("busy.yaml", cgPod("busy", a.Image, cgSleep,
		"    resources: {limits: {memory: 32Mi}}\n", ""))
	a.writeManifest("idle.yaml", cgPod("idle", a.Image, cgSleep, "", ""))
	a.writeManifest("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  contianers: []\n")
	a.waitPod("default/busy", "running", 30*time.Second, running)
	a.waitPod("default/idle", "running", 30*time.Second, running)

	var s cgScrape
	a.eventually("the agent's own series", 10*time.Second, func() error {
		s = a.scrapeMetrics()
		if n, _ := s.value("peapod_running_pods"); n != 2 {
			return fmt.Errorf("peapod_running_pods = %v, want 2", n)
		}
		if n, _ := s.value("peapod_pod_start_duration_seconds"); n < 2 {
			return fmt.Errorf("peapod_pod_start_duration_seconds count = %v, want >= 2", n)
		}
		if n, _ := s.value("peapod_manifest_errors_total", "file", filepath.Join(a.cfg.Manifests, "broken.yaml")); n < 1 {
			return fmt.Errorf("peapod_manifest_errors_total for broken.yaml = %v, want >= 1", n)
		}
		for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
			if _, ok := s.value(name); !ok {
				return fmt.Errorf("no %s", name)
			}
		}
		return nil
	})
	// Figures for the report, not assertions: the machine is shared.
	var took []time.Duration
	for range 5 {
		took = append(took, a.scrapeMetrics().took)
	}
	slices.Sort(took)
	t.Logf("/metrics with 2 pods: %d bytes, %d families; 5 scrapes took %v to %v, median %v",
		len(s.body), len(s.families), took[0], took[4], took[2])

	t.Run("promtool", func(t *testing.T) { cgPromtoolCheck(t, s.body) })
	t.Run("prometheus", func(t *testing.T) {
		prom := cgStartPrometheus(t, strings.TrimPrefix(a.metrics, "http://"))
		a.eventually("PromQL working set of busy", 60*time.Second, func() error {
			v, err := cgPromQuery(prom, `container_memory_working_set_bytes{pod="busy",container="busy"}`)
			if err != nil {
				return err
			}
			if v <= 0 {
				return fmt.Errorf("working set %v, want > 0", v)
			}
			return nil
		})
	})

	if n := s.podSeries("idle"); n == 0 {
		t.Fatalf("no series for pod idle before deleting it")
	}
	a.removeManifest("idle.yaml")
	a.eventually("idle's series gone", 30*time.Second, func() error {
		if a.pod("default/idle") != nil {
			return fmt.Errorf("pod still listed")
		}
		if n := a.scrapeMetrics().podSeries("idle"); n > 0 {
			return fmt.Errorf("%d series still labelled pod=idle", n)
		}
		return nil
	})
}

// cgPromtoolCheck runs `promtool check metrics` on body. cAdvisor's
// container_memory_failcnt, a counter without _total, is kept for
// compatibility and is the one accepted finding.
func cgPromtoolCheck(t *testing.T, body []byte) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	t.Logf("promtool check metrics: %v\n%s", err, out)
	var findings []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && line != `container_memory_failcnt counter metrics should have "_total" suffix` {
			findings = append(findings, line)
		}
	}
	if len(findings) > 0 || (err != nil && len(out) == 0) {
		t.Errorf("promtool check metrics: %v\n%s", err, strings.Join(findings, "\n"))
	}
}

// cgStartPrometheus runs a Prometheus server on a free loopback port that
// scrapes target every second, and returns its base URL. Cleanup stops it.
func cgStartPrometheus(t *testing.T, target string) string {
	t.Helper()
	return startPrometheus(t, fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: peapod
  static_configs: [{targets: [%q]}]
`, target), nil)
}

// startPrometheus runs a Prometheus server on a free loopback port with
// config as its prometheus.yml and files (by name) beside it, and returns
// its base URL. Cleanup stops it.
func startPrometheus(t *testing.T, config string, files map[string][]byte) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus)")
	}
	dir := t.TempDir()
	files = maps.Clone(files)
	if files == nil {
		files = map[string][]byte{}
	}
	files["prometheus.yml"] = []byte(config)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log syncBuffer
	cmd := exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	return "http://" + addr
}

// cgPromQuery runs an instant PromQL query and returns the value of its
// first result.
func cgPromQuery(prom, query string) (float64, error) {
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("decode query answer: %w", err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query: %s %s", r.Status, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, fmt.Errorf("query %s: no result yet", query)
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
