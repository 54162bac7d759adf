package reconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
)

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	reg := prometheus.NewPedanticRegistry()
	h.metrics = NewMetrics(reg)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withContainers("a", "b")), testPod("db", "db-1")))
	h.waitPhase("default/web", corev1.PodRunning)
	h.waitPhase("default/db", corev1.PodRunning)
	h.clock.Step(time.Second)
	h.rt.exit("web-1", "b", 1)
	h.waitState("db-1: web/0 Running", "web-1: a/0 Running b/1 Running")
	restarts := `
# HELP peapod_container_restarts_total Containers started again after they exited.
# TYPE peapod_container_restarts_total counter
peapod_container_restarts_total{container="a",namespace="default",pod="web"} 0
peapod_container_restarts_total{container="b",namespace="default",pod="web"} 1
peapod_container_restarts_total{container="web",namespace="default",pod="db"} 0
`
	h.eventually("restart counted", func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(restarts), "peapod_container_restarts_total") == nil
	})

	want := `
# HELP peapod_running_containers Containers by state.
# TYPE peapod_running_containers gauge
peapod_running_containers{container_state="running"} 3
peapod_running_containers{container_state="terminated"} 0
peapod_running_containers{container_state="waiting"} 0
# HELP peapod_running_pods Pods in phase Running.
# TYPE peapod_running_pods gauge
peapod_running_pods 2
`
	h.eventually("gauges", func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(want), "peapod_running_pods", "peapod_running_containers") == nil
	})
	if n := startsObserved(t, reg); n != 2 {
		t.Errorf("pod starts observed = %d, want 2", n)
	}

	// Series of a deleted pod go with it, so churn does not grow them.
	h.c.Update(snapshot(testPod("db", "db-1")))
	h.eventually("web's restarts gone", func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP peapod_container_restarts_total Containers started again after they exited.
# TYPE peapod_container_restarts_total counter
peapod_container_restarts_total{container="web",namespace="default",pod="db"} 0
`), "peapod_container_restarts_total") == nil
	})
}

func startsObserved(t *testing.T, reg prometheus.Gatherer) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "peapod_pod_start_duration_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
