package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peapod/peapod/manifests"
)

// manifestMetrics counts manifest problems per file. A file's error is
// counted once when it appears or changes, not at every rescan, so the
// counter's rate is the rate of new problems.
type manifestMetrics struct {
	errors  *prometheus.CounterVec
	invalid *prometheus.GaugeVec

	mu sync.Mutex
	// last holds each failing file's last counted error message.
	last map[string]string
}

func newManifestMetrics(reg prometheus.Registerer) *manifestMetrics {
	m := &manifestMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peapod_manifest_errors_total",
			Help: "Manifest problems found, by file: each new or changed error counts once.",
		}, []string{"file"}),
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "peapod_manifest_file_invalid",
			Help: "1 for each manifest file that currently fails to decode or validate.",
		}, []string{"file"}),
		last: map[string]string{},
	}
	reg.MustRegister(m.errors, m.invalid)
	return m
}

// observe updates the series from one snapshot.
func (m *manifestMetrics) observe(s manifests.Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := map[string]string{}
	for _, fe := range s.Errors {
		now[fe.File] += fe.Err.Error() + "\n"
	}
	for file, msg := range now {
		if m.last[file] != msg {
			m.errors.WithLabelValues(file).Inc()
		}
		m.invalid.WithLabelValues(file).Set(1)
	}
	for file := range m.last {
		if _, ok := now[file]; !ok {
			m.invalid.DeleteLabelValues(file)
		}
	}
	m.last = now
}
