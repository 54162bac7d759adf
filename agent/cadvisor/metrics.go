package cadvisor

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peapod/peapod/runtime/cgroups"
)

// labelNames are the labels of every series, as kubelet's cAdvisor endpoint
// sets them: id is the cgroup path, name the container ID.
var labelNames = []string{"container", "id", "image", "name", "namespace", "pod"}

func newDesc(name, help string, constLabels prometheus.Labels, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(slices.Clip(labelNames), extra...), constLabels)
}

// cgroupMetric is one series read from a cgroup.
type cgroupMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*cgroups.Stats) float64
	// when, if set, says whether the series exists for this cgroup.
	when func(*cgroups.Stats) bool
}

func seconds(ns uint64) float64 { return float64(ns) / 1e9 }

// hasQuota is cAdvisor's condition for the CFS series: they only mean
// something under a CPU limit.
func hasQuota(s *cgroups.Stats) bool { return s.CPUQuota != 0 }

// cgroupMetrics are cAdvisor's series read from a cgroup. cAdvisor without
// per-CPU metrics (kubelet's setting) labels the CPU usage cpu="total".
var cgroupMetrics = []cgroupMetric{
	{
		desc:  newDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", prometheus.Labels{"cpu": "total"}),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return seconds(s.CPUUsage) },
	}, {
		desc:  newDesc("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return seconds(s.CPUUser) },
	}, {
		desc:  newDesc("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return seconds(s.CPUSystem) },
	}, {
		desc:  newDesc("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.CFSPeriods) },
		when:  hasQuota,
	}, {
		desc:  newDesc("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.CFSThrottledPeriods) },
		when:  hasQuota,
	}, {
		desc:  newDesc("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return seconds(s.CFSThrottledTime) },
		when:  hasQuota,
	}, {
		desc:  newDesc("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemoryUsage) },
	}, {
		desc:  newDesc("container_memory_working_set_bytes", "Current working set in bytes.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemoryWorkingSet) },
	}, {
		desc:  newDesc("container_memory_rss", "Size of RSS in bytes.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemoryRSS) },
	}, {
		desc:  newDesc("container_memory_cache", "Number of bytes of page cache memory.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemoryCache) },
	}, {
		desc:  newDesc("container_memory_swap", "Container swap usage in bytes.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemorySwap) },
	}, {
		desc:  newDesc("container_memory_failcnt", "Number of memory usage hits limits", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemoryFailcnt) },
	}, {
		// cAdvisor counts OOM kills it sees in the kernel log; the
		// cgroup's own oom_kill counter gives the same number.
		desc:  newDesc("container_oom_events_total", "Count of out of memory events observed for the container", nil),
		typ:   prometheus.CounterValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.OOMKills) },
	}, {
		desc:  newDesc("container_processes", "Number of processes running inside the container.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.Processes) },
	}, {
		desc:  newDesc("container_threads", "Number of threads running inside the container", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.Threads) },
	}, {
		desc:  newDesc("container_spec_memory_limit_bytes", "Memory limit for the container.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.MemoryLimit) },
	}, {
		desc:  newDesc("container_spec_cpu_quota", "CPU quota of the container.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.CPUQuota) },
		when:  hasQuota,
	}, {
		desc:  newDesc("container_spec_cpu_period", "CPU period of the container.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.CPUPeriod) },
		when:  func(s *cgroups.Stats) bool { return s.CPUPeriod != 0 },
	}, {
		desc:  newDesc("container_spec_cpu_shares", "CPU share of the container.", nil),
		typ:   prometheus.GaugeValue,
		value: func(s *cgroups.Stats) float64 { return float64(s.CPUShares) },
	},
}

var (
	startTimeDesc   = newDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", nil)
	scrapeErrorDesc = prometheus.NewDesc("container_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)
