package cadvisor

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/peapod/peapod/runtime/cgroups/cgrouptest"
)

// TestResource checks kubelet's /metrics/resource families, with its label
// names, from a v2 fixture tree and a fixture procfs.
func TestResource(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + uid
	cgrouptest.V2(t, root, pod+"/app", pod+"/log")
	src := targets(t, root)
	dir := filepath.Join(root, pod, "app")
	cgrouptest.Write(t, dir, "cpu.stat", "usage_usec 2100000\nuser_usec 1500000\nsystem_usec 600000\n")
	cgrouptest.Write(t, dir, "memory.current", "10485760\n")
	cgrouptest.Write(t, dir, "memory.stat", "anon 4194304\nfile 6291456\ninactive_file 2097152\n")
	podDir := filepath.Join(root, pod)
	cgrouptest.Write(t, podDir, "cpu.stat", "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n")
	cgrouptest.Write(t, podDir, "memory.current", "20971520\n")

	proc := t.TempDir()
	// user nice system idle iowait irq softirq steal guest guest_nice
	if err := os.WriteFile(filepath.Join(proc, "stat"), []byte("cpu  1000 100 500 90000 300 20 30 50 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal:        1000 kB\nMemFree:          300 kB\nMemAvailable:     600 kB\nInactive(file):   200 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewResource(src, slog.New(slog.DiscardHandler))
	r.proc = proc

	got, families := gather(t, r)
	want := map[string]float64{
		"node_cpu_usage_seconds_total{}":                                              17,
		"node_memory_working_set_bytes{}":                                             500 * 1024,
		"pod_cpu_usage_seconds_total{namespace=default,pod=web}":                      3,
		"pod_memory_working_set_bytes{namespace=default,pod=web}":                     20971520,
		"container_cpu_usage_seconds_total{container=app,namespace=default,pod=web}":  2.1,
		"container_memory_working_set_bytes{container=app,namespace=default,pod=web}": 8388608,
		"container_start_time_seconds{container=app,namespace=default,pod=web}":       1767225601,
		"resource_scrape_error{}":                                                     0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	if f := families["node_cpu_usage_seconds_total"]; f != "COUNTER Cumulative cpu time consumed by the node in core-seconds" {
		t.Errorf("node_cpu_usage_seconds_total: %s", f)
	}
}
