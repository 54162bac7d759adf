package cadvisor

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/cgroups/cgrouptest"
)

const uid = "5eed"

var started = time.Unix(1767225600, 0)

// staticSource returns the same targets at every scrape.
type staticSource []Target

func (s staticSource) Targets() []Target { return s }

// testPod has "app" (500m CPU, 64Mi) and "log" (no limits), so the pod
// cgroup has no quota and no memory limit.
func testPod() *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "app", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("500m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		}}},
		{Name: "log"},
	}}}
}

// targets creates the test pod's cgroups under root and returns the pod
// and "app" targets.
func targets(t *testing.T, root string) staticSource {
	t.Helper()
	m, err := cgroups.New(cgroups.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	pod := testPod()
	p, err := m.Pod(uid, pod)
	if err != nil {
		t.Fatal(err)
	}
	var app *cgroups.Container
	for i := range pod.Spec.Containers {
		c, err := p.Container(pod.Spec.Containers[i].Name, &pod.Spec.Containers[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if c.Path() == p.Path()+"/app" {
			app = c
		}
	}
	return staticSource{
		{Namespace: "default", Pod: "web", Cgroup: p, StartTime: started},
		{Namespace: "default", Pod: "web", Container: "app", Image: "nginx:1.27", ID: "c0ffee", Cgroup: app, StartTime: started.Add(time.Second)},
	}
}

// gather scrapes c and returns each series ("name{label=value,...}") with
// its value, and each family's "TYPE help".
func gather(t *testing.T, c prometheus.Collector) (series map[string]float64, families map[string]string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series, families = map[string]float64{}, map[string]string{}
	for _, mf := range mfs {
		families[mf.GetName()] = mf.GetType().String() + " " + mf.GetHelp()
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(labels)
			series[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = value(m)
		}
	}
	return series, families
}

func value(m *dto.Metric) float64 {
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// expect builds the wanted series of one target from name → value; names
// may carry extra labels after a comma, e.g. "x,cpu=total".
func expect(want map[string]float64, container, id, image, name string, values map[string]float64) {
	base := fmt.Sprintf("container=%s,id=%s,image=%s,name=%s,namespace=default,pod=web", container, id, image, name)
	for n, v := range values {
		metric, extra, _ := strings.Cut(n, ",")
		labels := strings.Split(base, ",")
		if extra != "" {
			labels = append(labels, extra)
		}
		slices.Sort(labels)
		want[metric+"{"+strings.Join(labels, ",")+"}"] = v
	}
}

func TestCollectV1(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + uid
	cgrouptest.Hybrid(t, root, pod+"/app", pod+"/log")
	src := targets(t, root)

	in := func(h string) string { return filepath.Join(root, h, pod, "app") }
	cgrouptest.Write(t, in("cpuacct"), "cpuacct.stat", "user 150\nsystem 50\n")
	cgrouptest.Write(t, in("cpuacct"), "cpuacct.usage", "2100000000\n")
	cgrouptest.Write(t, in("cpu"), "cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 4500000\n")
	cgrouptest.Write(t, in("memory"), "memory.usage_in_bytes", "10485760\n")
	cgrouptest.Write(t, in("memory"), "memory.failcnt", "7\n")
	cgrouptest.Write(t, in("memory"), "memory.stat", "total_cache 6291456\ntotal_rss 4194304\ntotal_swap 4096\ntotal_inactive_file 2097152\n")
	cgrouptest.Write(t, in("memory"), "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	cgrouptest.Write(t, in("pids"), "pids.current", "5\n")
	cgrouptest.Write(t, in("pids"), "cgroup.procs", "10\n11\n")
	podDir := func(h string) string { return filepath.Join(root, h, pod) }
	cgrouptest.Write(t, podDir("cpuacct"), "cpuacct.usage", "3000000000\n")
	cgrouptest.Write(t, podDir("memory"), "memory.usage_in_bytes", "20971520\n")
	cgrouptest.Write(t, podDir("memory"), "memory.limit_in_bytes", "9223372036854771712\n")
	cgrouptest.Write(t, podDir("pids"), "pids.current", "6\n")

	got, _ := gather(t, New(src, slog.New(slog.DiscardHandler)))
	want := map[string]float64{"container_scrape_error{}": 0}
	expect(want, "", "/"+pod, "", "", map[string]float64{
		"container_cpu_usage_seconds_total,cpu=total": 3,
		"container_cpu_user_seconds_total":            0,
		"container_cpu_system_seconds_total":          0,
		"container_memory_usage_bytes":                20971520,
		"container_memory_working_set_bytes":          20971520,
		"container_memory_rss":                        0,
		"container_memory_cache":                      0,
		"container_memory_swap":                       0,
		"container_memory_failcnt":                    0,
		"container_oom_events_total":                  2, // v1's counter is per cgroup: the pod sums its containers'
		"container_processes":                         2,
		"container_threads":                           6,
		"container_spec_memory_limit_bytes":           0,
		"container_spec_cpu_period":                   100000,
		"container_spec_cpu_shares":                   512, // "log" requests nothing
		"container_start_time_seconds":                1767225600,
	})
	expect(want, "app", "/"+pod+"/app", "nginx:1.27", "c0ffee", map[string]float64{
		"container_cpu_usage_seconds_total,cpu=total": 2.1,
		"container_cpu_user_seconds_total":            1.5,
		"container_cpu_system_seconds_total":          0.5,
		"container_cpu_cfs_periods_total":             10,
		"container_cpu_cfs_throttled_periods_total":   3,
		"container_cpu_cfs_throttled_seconds_total":   0.0045,
		"container_memory_usage_bytes":                10485760,
		"container_memory_working_set_bytes":          8388608,
		"container_memory_rss":                        4194304,
		"container_memory_cache":                      6291456,
		"container_memory_swap":                       4096,
		"container_memory_failcnt":                    7,
		"container_oom_events_total":                  2,
		"container_processes":                         2,
		"container_threads":                           5,
		"container_spec_memory_limit_bytes":           67108864,
		"container_spec_cpu_quota":                    50000,
		"container_spec_cpu_period":                   100000,
		"container_spec_cpu_shares":                   512,
		"container_start_time_seconds":                1767225601,
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

func TestCollectV2(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + uid
	cgrouptest.V2(t, root, pod+"/app", pod+"/log")
	src := targets(t, root)

	dir := filepath.Join(root, pod, "app")
	cgrouptest.Write(t, dir, "cpu.stat", "usage_usec 2100000\nuser_usec 1500000\nsystem_usec 600000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 4500\n")
	cgrouptest.Write(t, dir, "memory.current", "10485760\n")
	cgrouptest.Write(t, dir, "memory.stat", "anon 4194304\nfile 6291456\ninactive_file 2097152\n")
	cgrouptest.Write(t, dir, "memory.swap.current", "4096\n")
	cgrouptest.Write(t, dir, "memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n")
	cgrouptest.Write(t, dir, "pids.current", "5\n")
	cgrouptest.Write(t, dir, "cgroup.procs", "10\n11\n12\n")
	podDir := filepath.Join(root, pod)
	cgrouptest.Write(t, podDir, "cpu.stat", "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n")
	cgrouptest.Write(t, podDir, "memory.current", "20971520\n")
	cgrouptest.Write(t, podDir, "pids.current", "6\n")

	got, _ := gather(t, New(src, slog.New(slog.DiscardHandler)))
	want := map[string]float64{"container_scrape_error{}": 0}
	expect(want, "", "/"+pod, "", "", map[string]float64{
		"container_cpu_usage_seconds_total,cpu=total": 3,
		"container_cpu_user_seconds_total":            2,
		"container_cpu_system_seconds_total":          1,
		"container_memory_usage_bytes":                20971520,
		"container_memory_working_set_bytes":          20971520,
		"container_memory_rss":                        0,
		"container_memory_cache":                      0,
		"container_memory_swap":                       0,
		"container_memory_failcnt":                    0,
		"container_oom_events_total":                  0,
		"container_processes":                         3,
		"container_threads":                           6,
		"container_spec_memory_limit_bytes":           0,
		"container_spec_cpu_period":                   100000,
		"container_spec_cpu_shares":                   500, // cpu.weight 20
		"container_start_time_seconds":                1767225600,
	})
	expect(want, "app", "/"+pod+"/app", "nginx:1.27", "c0ffee", map[string]float64{
		"container_cpu_usage_seconds_total,cpu=total": 2.1,
		"container_cpu_user_seconds_total":            1.5,
		"container_cpu_system_seconds_total":          0.6,
		"container_cpu_cfs_periods_total":             10,
		"container_cpu_cfs_throttled_periods_total":   3,
		"container_cpu_cfs_throttled_seconds_total":   0.0045,
		"container_memory_usage_bytes":                10485760,
		"container_memory_working_set_bytes":          8388608,
		"container_memory_rss":                        4194304,
		"container_memory_cache":                      6291456,
		"container_memory_swap":                       4096,
		"container_memory_failcnt":                    0,
		"container_oom_events_total":                  1,
		"container_processes":                         3,
		"container_threads":                           5,
		"container_spec_memory_limit_bytes":           67108864,
		"container_spec_cpu_quota":                    50000,
		"container_spec_cpu_period":                   100000,
		"container_spec_cpu_shares":                   500, // cpu.weight 20
		"container_start_time_seconds":                1767225601,
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestFamilies checks types and help strings against cAdvisor's.
func TestFamilies(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V2(t, root, "peapod/pod"+uid+"/app", "peapod/pod"+uid+"/log")
	src := targets(t, root)
	src[0].NetNSPath = "/proc/self/ns/net"
	_, got := gather(t, New(src, slog.New(slog.DiscardHandler)))
	want := map[string]string{
		"container_cpu_usage_seconds_total":                "COUNTER Cumulative cpu time consumed in seconds.",
		"container_cpu_user_seconds_total":                 "COUNTER Cumulative user cpu time consumed in seconds.",
		"container_cpu_system_seconds_total":               "COUNTER Cumulative system cpu time consumed in seconds.",
		"container_cpu_cfs_periods_total":                  "COUNTER Number of elapsed enforcement period intervals.",
		"container_cpu_cfs_throttled_periods_total":        "COUNTER Number of throttled period intervals.",
		"container_cpu_cfs_throttled_seconds_total":        "COUNTER Total time duration the container has been throttled.",
		"container_memory_usage_bytes":                     "GAUGE Current memory usage in bytes, including all memory regardless of when it was accessed",
		"container_memory_working_set_bytes":               "GAUGE Current working set in bytes.",
		"container_memory_rss":                             "GAUGE Size of RSS in bytes.",
		"container_memory_cache":                           "GAUGE Number of bytes of page cache memory.",
		"container_memory_swap":                            "GAUGE Container swap usage in bytes.",
		"container_memory_failcnt":                         "COUNTER Number of memory usage hits limits",
		"container_oom_events_total":                       "COUNTER Count of out of memory events observed for the container",
		"container_processes":                              "GAUGE Number of processes running inside the container.",
		"container_threads":                                "GAUGE Number of threads running inside the container",
		"container_spec_memory_limit_bytes":                "GAUGE Memory limit for the container.",
		"container_spec_cpu_quota":                         "GAUGE CPU quota of the container.",
		"container_spec_cpu_period":                        "GAUGE CPU period of the container.",
		"container_spec_cpu_shares":                        "GAUGE CPU share of the container.",
		"container_start_time_seconds":                     "GAUGE Start time of the container since unix epoch in seconds.",
		"container_network_receive_bytes_total":            "COUNTER Cumulative count of bytes received",
		"container_network_receive_packets_total":          "COUNTER Cumulative count of packets received",
		"container_network_receive_packets_dropped_total":  "COUNTER Cumulative count of packets dropped while receiving",
		"container_network_receive_errors_total":           "COUNTER Cumulative count of errors encountered while receiving",
		"container_network_transmit_bytes_total":           "COUNTER Cumulative count of bytes transmitted",
		"container_network_transmit_packets_total":         "COUNTER Cumulative count of packets transmitted",
		"container_network_transmit_packets_dropped_total": "COUNTER Cumulative count of packets dropped while transmitting",
		"container_network_transmit_errors_total":          "COUNTER Cumulative count of errors encountered while transmitting",
		"container_scrape_error":                           "GAUGE 1 if there was an error while getting container metrics, 0 otherwise",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("families (-want +got):\n%s", diff)
	}
}

// TestNetwork reads the test's own network namespace, which needs no
// privilege: every link but lo gets the eight counters, on the pod only.
func TestNetwork(t *testing.T) {
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			want = append(want, l.Attrs().Name)
		}
	}
	root := t.TempDir()
	cgrouptest.V2(t, root, "peapod/pod"+uid+"/app", "peapod/pod"+uid+"/log")
	src := targets(t, root)
	src[0].NetNSPath = "/proc/self/ns/net"
	got, _ := gather(t, New(src, slog.New(slog.DiscardHandler)))

	counts := map[string]int{}
	for s := range got {
		if !strings.HasPrefix(s, "container_network_") {
			continue
		}
		if !strings.Contains(s, "container=,") {
			t.Errorf("network series on a container: %s", s)
		}
		_, iface, _ := strings.Cut(s, "interface=")
		iface, _, _ = strings.Cut(iface, ",")
		counts[iface]++
	}
	for _, name := range want {
		if counts[name] != len(networkMetrics) {
			t.Errorf("interface %s: %d network series, want %d", name, counts[name], len(networkMetrics))
		}
		delete(counts, name)
	}
	if len(counts) != 0 {
		t.Errorf("series for unexpected interfaces (lo is left out): %v", counts)
	}
}

func TestCollectErrors(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + uid
	cgrouptest.V2(t, root, pod+"/app", pod+"/log", "peapod/podgone")
	src := targets(t, root)
	m, err := cgroups.New(cgroups.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := m.Pod("gone", testPod())
	if err != nil {
		t.Fatal(err)
	}
	// The pod is removed between Targets and the read: no series, no error.
	if err := os.RemoveAll(filepath.Join(root, "peapod/podgone")); err != nil {
		t.Fatal(err)
	}
	src = append(src, Target{Namespace: "default", Pod: "gone", Cgroup: gone})
	cgrouptest.Write(t, filepath.Join(root, pod, "app"), "cpu.max", "garbage\n")

	var logged bytes.Buffer
	got, _ := gather(t, New(src, slog.New(slog.NewTextHandler(&logged, nil))))
	if got["container_scrape_error{}"] != 1 {
		t.Errorf("container_scrape_error = %v, want 1 for the unreadable cpu.max", got["container_scrape_error{}"])
	}
	for s := range got {
		if strings.Contains(s, "pod=gone") || strings.Contains(s, "container=app") {
			t.Errorf("series for a removed pod or an unreadable container: %s", s)
		}
	}
	if got := strings.Count(logged.String(), "level=WARN"); got != 1 || !strings.Contains(logged.String(), "container=app") {
		t.Errorf("log = %q, want one warning, for app", logged.String())
	}
}

// TestPromtool runs promtool's linter on a scrape. Its only finding must
// be a name cAdvisor chose before the convention, which we keep.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus); skipping the exposition lint")
	}
	root := t.TempDir()
	cgrouptest.Hybrid(t, root, "peapod/pod"+uid+"/app", "peapod/pod"+uid+"/log")
	src := targets(t, root)
	src[0].NetNSPath = "/proc/self/ns/net"
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src, slog.New(slog.DiscardHandler)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	out, _ := cmd.CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), `container_memory_failcnt counter metrics should have "_total" suffix`; got != want {
		t.Errorf("promtool check metrics:\n%s\nwant only: %s", got, want)
	}
}

// BenchmarkCollect200 scrapes 100 pods of 2 containers (300 cgroups) on a
// v2 fixture tree.
func BenchmarkCollect200(b *testing.B) {
	root := b.TempDir()
	var rels []string
	for i := range 100 {
		pod := fmt.Sprintf("peapod/pod%d", i)
		rels = append(rels, pod+"/app", pod+"/log")
	}
	cgrouptest.V2(b, root, rels...)
	m, err := cgroups.New(cgroups.Options{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	var src staticSource
	for i := range 100 {
		pod := testPod()
		p, err := m.Pod(types.UID(fmt.Sprint(i)), pod)
		if err != nil {
			b.Fatal(err)
		}
		src = append(src, Target{Namespace: "default", Pod: fmt.Sprint("web", i), Cgroup: p, StartTime: started})
		for j := range pod.Spec.Containers {
			c, err := p.Container(pod.Spec.Containers[j].Name, &pod.Spec.Containers[j])
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			src = append(src, Target{Namespace: "default", Pod: fmt.Sprint("web", i), Container: pod.Spec.Containers[j].Name, ID: fmt.Sprint(i, j), Cgroup: c, StartTime: started})
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src, slog.New(slog.DiscardHandler)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
