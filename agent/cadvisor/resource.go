package cadvisor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Resource is a prometheus.Collector for kubelet's /metrics/resource (the
// families metrics-server reads): CPU time and working set of the node, of
// each pod and of each running container, read at scrape time.
type Resource struct {
	src Source
	log *slog.Logger
	// proc is the procfs the node series are read from.
	proc string
}

// NewResource returns a Resource over the targets src lists at each scrape.
func NewResource(src Source, log *slog.Logger) *Resource {
	return &Resource{src: src, log: log, proc: "/proc"}
}

var (
	nodeCPUDesc            = prometheus.NewDesc("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	nodeMemoryDesc         = prometheus.NewDesc("node_memory_working_set_bytes", "Current working set of the node in bytes", nil, nil)
	podCPUDesc             = prometheus.NewDesc("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", []string{"pod", "namespace"}, nil)
	podMemoryDesc          = prometheus.NewDesc("pod_memory_working_set_bytes", "Current working set of the pod in bytes", []string{"pod", "namespace"}, nil)
	containerCPUDesc       = prometheus.NewDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", []string{"container", "pod", "namespace"}, nil)
	containerMemoryDesc    = prometheus.NewDesc("container_memory_working_set_bytes", "Current working set of the container in bytes", []string{"container", "pod", "namespace"}, nil)
	containerStartDesc     = prometheus.NewDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds", []string{"container", "pod", "namespace"}, nil)
	resourceScrapeErrorDsc = prometheus.NewDesc("resource_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Resource) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeCPUDesc, nodeMemoryDesc, podCPUDesc, podMemoryDesc, containerCPUDesc, containerMemoryDesc, containerStartDesc, resourceScrapeErrorDsc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. As in Collector, a cgroup gone
// since Targets returned is skipped quietly; other failures are logged and
// set resource_scrape_error to 1.
func (r *Resource) Collect(ch chan<- prometheus.Metric) {
	var failed atomic.Bool
	if err := r.collectNode(ch); err != nil {
		r.log.Warn("read node resource metrics", "err", err)
		failed.Store(true)
	}
	forEach(r.src.Targets(), func(t Target) {
		s, err := t.Cgroup.Stats()
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err != nil {
			r.log.Warn("read container resource metrics", "pod", t.Namespace+"/"+t.Pod, "container", t.Container, "err", err)
			failed.Store(true)
			return
		}
		if t.Container == "" {
			ch <- prometheus.MustNewConstMetric(podCPUDesc, prometheus.CounterValue, seconds(s.CPUUsage), t.Pod, t.Namespace)
			ch <- prometheus.MustNewConstMetric(podMemoryDesc, prometheus.GaugeValue, float64(s.MemoryWorkingSet), t.Pod, t.Namespace)
			return
		}
		ch <- prometheus.MustNewConstMetric(containerCPUDesc, prometheus.CounterValue, seconds(s.CPUUsage), t.Container, t.Pod, t.Namespace)
		ch <- prometheus.MustNewConstMetric(containerMemoryDesc, prometheus.GaugeValue, float64(s.MemoryWorkingSet), t.Container, t.Pod, t.Namespace)
		if !t.StartTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(containerStartDesc, prometheus.GaugeValue, float64(t.StartTime.Unix()), t.Container, t.Pod, t.Namespace)
		}
	})
	ch <- prometheus.MustNewConstMetric(resourceScrapeErrorDsc, prometheus.GaugeValue, boolValue(failed.Load()))
}

// userHZ is the unit of /proc/stat's times on every Linux architecture Go
// supports.
const userHZ = 100

// collectNode reads the node's series from procfs: the CPU time is every
// state of the cpu line but idle and iowait (and guest time, which user
// already counts); the working set is what the kernel cannot reclaim
// without I/O, MemTotal - MemFree - Inactive(file), as kubelet takes the
// root cgroup's usage minus its inactive file pages.
func (r *Resource) collectNode(ch chan<- prometheus.Metric) error {
	stat, err := os.ReadFile(r.proc + "/stat")
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return fmt.Errorf("%s/stat: unexpected first line %q", r.proc, line)
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return fmt.Errorf("%s/stat: %w", r.proc, err)
		}
		busy += v
	}
	ch <- prometheus.MustNewConstMetric(nodeCPUDesc, prometheus.CounterValue, float64(busy)/userHZ)

	mem, err := os.Open(r.proc + "/meminfo")
	if err != nil {
		return err
	}
	defer mem.Close()
	kb := map[string]uint64{}
	sc := bufio.NewScanner(mem)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err == nil {
			kb[k] = n
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s/meminfo: %w", r.proc, err)
	}
	total, free, inactive := kb["MemTotal"], kb["MemFree"], kb["Inactive(file)"]
	if total == 0 {
		return fmt.Errorf("%s/meminfo: no MemTotal", r.proc)
	}
	ws := int64(total) - int64(free) - int64(inactive)
	ch <- prometheus.MustNewConstMetric(nodeMemoryDesc, prometheus.GaugeValue, float64(max(ws, 0)*1024))
	return nil
}
