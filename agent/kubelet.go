package agent

import (
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
)

// kubeletEndpoints are the paths of kubelet's HTTP surface (and
// kube-state-metrics' series) that the agent serves on its metrics
// address, beside its own /metrics:
//
//	GET /metrics/cadvisor  the container_* families, as kubelet serves them
//	GET /metrics/resource  kubelet's resource metrics (what metrics-server reads)
//	GET /metrics/state     kube-state-metrics' pod and node families
//	GET /pods              a v1.PodList, like kubelet's read-only /pods,
//	                       without environment variable values
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
		list := podList(k.pods.Pods())
		for i := range list.Items {
			withoutEnvValues(&list.Items[i])
		}
		writeJSON(w, list)
	})
}

// withoutEnvValues clears the value of every environment variable written
// in the manifest: the metrics address is open to every local user (and to
// the network if --metrics-addr says so), unlike the root-only status
// socket, and such values are often secrets. Names and valueFrom stay.
// The containers are copied first: p may share them with the controller.
func withoutEnvValues(p *corev1.Pod) {
	for _, cs := range []*[]corev1.Container{&p.Spec.InitContainers, &p.Spec.Containers} {
		*cs = slices.Clone(*cs)
		for i := range *cs {
			c := &(*cs)[i]
			c.Env = slices.Clone(c.Env)
			for j := range c.Env {
				c.Env[j].Value = ""
			}
		}
	}
}
