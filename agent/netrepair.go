package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/netsetup"
)

// keeper repairs the host network of the pods while the agent runs
// (netsetup.Manager.Keep).
type keeper interface {
	Keep(ctx context.Context, opts netsetup.KeepOptions)
}

// repairMetrics count the repairs of the host network and the pods whose
// network could not be repaired.
type repairMetrics struct {
	repairs     *prometheus.CounterVec
	unavailable prometheus.Gauge
}

func newRepairMetrics(reg prometheus.Registerer) *repairMetrics {
	m := &repairMetrics{
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peapod_network_repairs_total",
			Help: "Repairs of the pods' host network after someone else changed it, by what was repaired.",
		}, []string{"what"}),
		unavailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peapod_network_unavailable_pods",
			Help: "Running pods whose network is broken and could not be repaired.",
		}),
	}
	for _, what := range netsetup.RepairKinds {
		m.repairs.WithLabelValues(what)
	}
	reg.MustRegister(m.repairs, m.unavailable)
	return m
}

// podHealth holds the pods whose network the last repair round could not
// repair, for their status.
type podHealth struct {
	mu          sync.Mutex
	unavailable map[types.UID]error
}

// NetworkUnavailable implements the reconcile controller's optional
// network health check.
func (g *guardedNetwork) NetworkUnavailable(uid types.UID) error {
	g.health.mu.Lock()
	defer g.health.mu.Unlock()
	return g.health.unavailable[uid]
}

// keep runs the network's repair until ctx is done, under the same lock as
// garbage collection: no round ever sees a pod half set up. changed is
// called when a pod's network became unavailable or available again.
func (g *guardedNetwork) keep(ctx context.Context, log *slog.Logger, m *repairMetrics, changed func()) {
	g.keeper.Keep(ctx, netsetup.KeepOptions{
		Pods: g.podNetNSes,
		Lock: &g.mu,
		Report: func(r netsetup.RepairResult) {
			for what, n := range r.Repairs {
				m.repairs.WithLabelValues(what).Add(float64(n))
			}
			m.unavailable.Set(float64(len(r.Unavailable)))
			g.health.mu.Lock()
			flipped := len(r.Unavailable) != len(g.health.unavailable)
			for uid := range g.health.unavailable {
				if r.Unavailable[uid] == nil {
					log.Info("pod network available again", "uid", uid)
					flipped = true
				}
			}
			g.health.unavailable = r.Unavailable
			g.health.mu.Unlock()
			if flipped {
				changed()
			}
		},
	})
}

// podNetNSes lists the pods that have a network namespace of their own.
func (g *guardedNetwork) podNetNSes(ctx context.Context) ([]netsetup.PodNetNS, error) {
	pods, err := g.rt.ListPods(ctx)
	if err != nil {
		return nil, err
	}
	var out []netsetup.PodNetNS
	for _, p := range pods {
		if p.NetNSPath != "" && !p.Pod.Spec.HostNetwork {
			out = append(out, netsetup.PodNetNS{UID: p.UID(), NetNSPath: p.NetNSPath})
		}
	}
	return out, nil
}
