package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// kubeletEndpoints are the paths of kubelet's HTTP surface (and
// kube-state-metrics' series) that the agent serves on its metrics
// address, beside its own /metrics:
//
//	GET /metrics/cadvisor  the container_* families, as kubelet serves them
//	GET /metrics/resource  kubelet's resource metrics (what metrics-server reads)
//	GET /metrics/state     kube-state-metrics' pod and node families
//	GET /pods              a v1.PodList, like kubelet's read-only /pods
//
// /healthz is served by metricsHandler, as kubelet serves it.
type kubeletEndpoints struct {
	pods     PodLister
	cadvisor *prometheus.Registry
	resource *prometheus.Registry
	state    *prometheus.Registry
}

func newKubeletEndpoints(pods PodLister, node stateNode) *kubeletEndpoints {
	k := &kubeletEndpoints{pods: pods, cadvisor: prometheus.NewRegistry(), resource: prometheus.NewRegistry(), state: prometheus.NewRegistry()}
	k.state.MustRegister(&stateCollector{pods: pods.Pods, node: node})
	return k
}

func (k *kubeletEndpoints) register(mux *http.ServeMux) {
	mux.Handle("GET /metrics/cadvisor", promhttp.HandlerFor(k.cadvisor, promhttp.HandlerOpts{}))
	mux.Handle("GET /metrics/resource", promhttp.HandlerFor(k.resource, promhttp.HandlerOpts{}))
	mux.Handle("GET /metrics/state", promhttp.HandlerFor(k.state, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /pods", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, podList(k.pods.Pods()))
	})
}
