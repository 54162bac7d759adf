package reconcile

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// Metrics are the controller's Prometheus series, in the spirit of
// kubelet's. A nil *Metrics records nothing. The gauges are computed at
// scrape time from the Controller that New attached to them.
type Metrics struct {
	syncDuration  prometheus.Histogram
	startDuration prometheus.Histogram
	syncErrors    *prometheus.CounterVec
	panics        prometheus.Counter

	runningPods       *prometheus.Desc
	runningContainers *prometheus.Desc
	// restarts is read from the pods' restart counts at scrape time, so a
	// deleted pod's series go with it.
	restarts *prometheus.Desc

	mu sync.Mutex
	// pods reports the current pod statuses; nil until New attaches it.
	pods func() []corev1.Pod
}

// NewMetrics creates the controller's series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peapod_reconcile_duration_seconds",
			Help:    "Duration of one pod worker sync.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		startDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peapod_pod_start_duration_seconds",
			Help:    "Time from a pod first appearing in the manifests to all its containers running.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peapod_sync_errors_total",
			Help: "Failed runtime and network operations, by reason.",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peapod_worker_panics_total",
			Help: "Pod worker syncs that panicked and were recovered.",
		}),
		runningPods: prometheus.NewDesc("peapod_running_pods",
			"Pods in phase Running.", nil, nil),
		runningContainers: prometheus.NewDesc("peapod_running_containers",
			"Containers by state.", []string{"container_state"}, nil),
		restarts: prometheus.NewDesc("peapod_container_restarts_total",
			"Containers started again after they exited.", []string{"namespace", "pod", "container"}, nil),
	}
	reg.MustRegister(m.syncDuration, m.startDuration, m.syncErrors, m.panics, m)
	return m
}

// Describe implements prometheus.Collector for the gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.runningPods
	ch <- m.runningContainers
	ch <- m.restarts
}

// Collect implements prometheus.Collector for the gauges.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	source := m.pods
	m.mu.Unlock()
	var pods []corev1.Pod
	if source != nil {
		pods = source()
	}
	running := 0
	states := map[string]int{"running": 0, "waiting": 0, "terminated": 0}
	for i, p := range pods {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
		for _, cs := range p.Status.ContainerStatuses {
			states[containerStateName(cs.State)]++
		}
		// A pod being torn down is listed just before its replacement of
		// the same name: the series is the replacement's.
		if i+1 < len(pods) && pods[i+1].Namespace == p.Namespace && pods[i+1].Name == p.Name {
			continue
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			ch <- prometheus.MustNewConstMetric(m.restarts, prometheus.CounterValue, float64(cs.RestartCount), p.Namespace, p.Name, cs.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(m.runningPods, prometheus.GaugeValue, float64(running))
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(m.runningContainers, prometheus.GaugeValue, float64(n), state)
	}
}

func containerStateName(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Terminated != nil:
		return "terminated"
	default:
		return "waiting"
	}
}

func (m *Metrics) attach(pods func() []corev1.Pod) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pods = pods
}

func (m *Metrics) observeSync(d time.Duration) {
	if m != nil {
		m.syncDuration.Observe(d.Seconds())
	}
}

func (m *Metrics) podStarted(d time.Duration) {
	if m != nil {
		m.startDuration.Observe(d.Seconds())
	}
}

func (m *Metrics) syncError(reason string) {
	if m != nil {
		m.syncErrors.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) panicked() {
	if m != nil {
		m.panics.Inc()
	}
}
