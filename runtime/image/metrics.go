package image

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's pull metrics; they exist unregistered when the
// store was given no Registerer.
type metrics struct {
	duration prometheus.Histogram
	bytes    prometheus.Counter
	pulls    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peapod_image_pull_duration_seconds",
			Help:    "Time taken by image pulls, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 13), // 0.1 s to 6.8 min
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peapod_image_pull_bytes_total",
			Help: "Compressed layer bytes downloaded from registries.",
		}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peapod_image_pulls_total",
			Help: "Image pulls by result (success or failure).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.duration, m.bytes, m.pulls} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(start time.Time, err error) {
	m.duration.Observe(time.Since(start).Seconds())
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.pulls.WithLabelValues(result).Inc()
}
