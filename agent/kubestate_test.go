package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fixedPods []corev1.Pod

func (f fixedPods) Pods() []corev1.Pod { return slices.Clone(f) }

func statePod() corev1.Pod {
	start := metav1.NewTime(time.Unix(1700000100, 0))
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "u1", Labels: map[string]string{"app.kubernetes.io/name": "web", "tier": "front"}, CreationTimestamp: metav1.NewTime(time.Unix(1700000000, 0))},
		Spec: corev1.PodSpec{
			NodeName:       "node1",
			InitContainers: []corev1.Container{{Name: "setup", Image: "busybox"}},
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1", Env: []corev1.EnvVar{{Name: "TOKEN", Value: "s3cret"}}, Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi"),
					corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
			}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "10.0.0.1", PodIP: "10.88.0.2", StartTime: &start,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "setup", Image: "busybox", ContainerID: "peapod://i1",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}, Ready: true}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx:1", ContainerID: "peapod://c1", RestartCount: 2,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled"}}}},
		},
	}
}

func testStateNode() stateNode {
	return stateNode{name: "node1", kernelVersion: "6.1.0", osImage: "Debian", runtimeVersion: "peapod://v1", cpu: 2, memoryBytes: 1 << 30,
		internalIP: func() string { return "10.0.0.1" }}
}

// TestStateLabels checks every family's label names against the ones
// kube-state-metrics documents (docs/metrics/workload/pod-metrics.md,
// docs/metrics/cluster/node-metrics.md).
func TestStateLabels(t *testing.T) {
	pod := "namespace pod uid"
	ctr := pod + " container"
	want := map[string]string{
		"kube_pod_info":                                    pod + " host_ip pod_ip node created_by_kind created_by_name priority_class host_network",
		"kube_pod_labels":                                  pod + " label_app_kubernetes_io_name label_tier",
		"kube_pod_owner":                                   pod + " owner_kind owner_name owner_is_controller",
		"kube_pod_start_time":                              pod,
		"kube_pod_created":                                 pod,
		"kube_pod_status_phase":                            pod + " phase",
		"kube_pod_status_ready":                            pod + " condition",
		"kube_pod_status_scheduled":                        pod + " condition",
		"kube_pod_container_info":                          ctr + " image_spec image image_id container_id",
		"kube_pod_container_status_waiting":                ctr,
		"kube_pod_container_status_waiting_reason":         ctr + " reason",
		"kube_pod_container_status_running":                ctr,
		"kube_pod_container_status_terminated":             ctr,
		"kube_pod_container_status_last_terminated_reason": ctr + " reason",
		"kube_pod_container_status_ready":                  ctr,
		"kube_pod_container_status_restarts_total":         ctr,
		"kube_pod_container_resource_requests":             ctr + " node resource unit",
		"kube_pod_container_resource_limits":               ctr + " node resource unit",
		"kube_pod_init_container_info":                     ctr + " image_spec image image_id container_id",
		"kube_pod_init_container_status_terminated_reason": ctr + " reason",
		"kube_pod_init_container_status_ready":             ctr,
		"kube_pod_init_container_status_restarts_total":    ctr,
		"kube_node_info":                                   "node kernel_version os_image container_runtime_version kubelet_version kubeproxy_version provider_id pod_cidr system_uuid internal_ip",
		"kube_node_status_capacity":                        "node resource unit",
		"kube_node_status_allocatable":                     "node resource unit",
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&stateCollector{pods: fixedPods{statePod()}.Pods, node: testStateNode()})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fams {
		var names []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName())
		}
		got[f.GetName()] = strings.Join(names, " ")
	}
	for name, labels := range want {
		w := strings.Fields(labels)
		slices.Sort(w)
		if got[name] != strings.Join(w, " ") {
			t.Errorf("%s labels = %q, want %q", name, got[name], strings.Join(w, " "))
		}
	}
}

// TestStateValues checks the values and units of the series the
// kubernetes-mixin reads.
func TestStateValues(t *testing.T) {
	c := &stateCollector{pods: fixedPods{statePod()}.Pods, node: testStateNode()}
	want := `
# HELP kube_pod_container_resource_limits The number of requested limit resource by a container.
# TYPE kube_pod_container_resource_limits gauge
kube_pod_container_resource_limits{container="app",namespace="default",node="node1",pod="web",resource="ephemeral_storage",uid="u1",unit="byte"} 1.073741824e+09
kube_pod_container_resource_limits{container="app",namespace="default",node="node1",pod="web",resource="memory",uid="u1",unit="byte"} 6.7108864e+07
# HELP kube_pod_container_resource_requests The number of requested request resource by a container.
# TYPE kube_pod_container_resource_requests gauge
kube_pod_container_resource_requests{container="app",namespace="default",node="node1",pod="web",resource="cpu",uid="u1",unit="core"} 0.1
# HELP kube_pod_container_status_restarts_total The number of restarts for the container.
# TYPE kube_pod_container_status_restarts_total counter
kube_pod_container_status_restarts_total{container="app",namespace="default",pod="web",uid="u1"} 2
# HELP kube_pod_container_status_waiting_reason Describes the reason the container is currently in waiting state.
# TYPE kube_pod_container_status_waiting_reason gauge
kube_pod_container_status_waiting_reason{container="app",namespace="default",pod="web",reason="CrashLoopBackOff",uid="u1"} 1
# HELP kube_pod_container_status_last_terminated_reason Describes the last reason the container was in terminated state.
# TYPE kube_pod_container_status_last_terminated_reason gauge
kube_pod_container_status_last_terminated_reason{container="app",namespace="default",pod="web",reason="OOMKilled",uid="u1"} 1
# HELP kube_pod_info Information about pod.
# TYPE kube_pod_info gauge
kube_pod_info{created_by_kind="<none>",created_by_name="<none>",host_ip="10.0.0.1",host_network="false",namespace="default",node="node1",pod="web",pod_ip="10.88.0.2",priority_class="",uid="u1"} 1
# HELP kube_pod_labels Kubernetes labels converted to Prometheus labels.
# TYPE kube_pod_labels gauge
kube_pod_labels{label_app_kubernetes_io_name="web",label_tier="front",namespace="default",pod="web",uid="u1"} 1
# HELP kube_pod_owner Information about the Pod's owner.
# TYPE kube_pod_owner gauge
kube_pod_owner{namespace="default",owner_is_controller="<none>",owner_kind="<none>",owner_name="<none>",pod="web",uid="u1"} 1
# HELP kube_pod_start_time Start time in unix timestamp for a pod.
# TYPE kube_pod_start_time gauge
kube_pod_start_time{namespace="default",pod="web",uid="u1"} 1.7000001e+09
# HELP kube_pod_status_phase The pods current phase.
# TYPE kube_pod_status_phase gauge
kube_pod_status_phase{namespace="default",phase="Failed",pod="web",uid="u1"} 0
kube_pod_status_phase{namespace="default",phase="Pending",pod="web",uid="u1"} 0
kube_pod_status_phase{namespace="default",phase="Running",pod="web",uid="u1"} 1
kube_pod_status_phase{namespace="default",phase="Succeeded",pod="web",uid="u1"} 0
kube_pod_status_phase{namespace="default",phase="Unknown",pod="web",uid="u1"} 0
# HELP kube_pod_status_ready Describes whether the pod is ready to serve requests.
# TYPE kube_pod_status_ready gauge
kube_pod_status_ready{condition="false",namespace="default",pod="web",uid="u1"} 1
kube_pod_status_ready{condition="true",namespace="default",pod="web",uid="u1"} 0
kube_pod_status_ready{condition="unknown",namespace="default",pod="web",uid="u1"} 0
# HELP kube_pod_init_container_status_terminated_reason Describes the reason the init container is currently in terminated state.
# TYPE kube_pod_init_container_status_terminated_reason gauge
kube_pod_init_container_status_terminated_reason{container="setup",namespace="default",pod="web",reason="Completed",uid="u1"} 1
# HELP kube_node_status_allocatable The allocatable for different resources of a node that are available for scheduling.
# TYPE kube_node_status_allocatable gauge
kube_node_status_allocatable{node="node1",resource="cpu",unit="core"} 2
kube_node_status_allocatable{node="node1",resource="memory",unit="byte"} 1.073741824e+09
`
	names := []string{"kube_pod_container_resource_limits", "kube_pod_container_resource_requests", "kube_pod_container_status_restarts_total",
		"kube_pod_container_status_waiting_reason", "kube_pod_container_status_last_terminated_reason", "kube_pod_info", "kube_pod_labels", "kube_pod_owner",
		"kube_pod_start_time", "kube_pod_status_phase", "kube_pod_status_ready", "kube_pod_init_container_status_terminated_reason",
		"kube_node_status_allocatable"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

type okHealth struct{}

func (okHealth) Healthy(time.Time) error { return nil }
func (okHealth) Ready() <-chan struct{}  { c := make(chan struct{}); close(c); return c }

// TestKubeletPaths checks the kubelet paths on the metrics address: each
// answers, /pods is a v1.PodList, and a deleted pod's kube-state series go
// at the next scrape.
func TestKubeletPaths(t *testing.T) {
	pods := &mutablePods{pods: []corev1.Pod{statePod()}}
	k := newKubeletEndpoints(pods, testStateNode())
	k.cadvisor.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "container_scrape_error", Help: "x"}))
	srv := httptest.NewServer(metricsHandler(prometheus.NewRegistry(), okHealth{}, k))
	defer srv.Close()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if body := get("/metrics/cadvisor"); !strings.Contains(body, "container_scrape_error") {
		t.Errorf("/metrics/cadvisor without the cAdvisor families:\n%s", body)
	}
	get("/metrics/resource")
	if body := get("/healthz"); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	var list corev1.PodList
	body := get("/pods")
	if err := json.Unmarshal([]byte(body), &list); err != nil || list.Kind != "PodList" || len(list.Items) != 1 || list.Items[0].Name != "web" {
		t.Errorf("/pods = %+v, %v", list, err)
	}
	if !strings.Contains(body, `"TOKEN"`) || strings.Contains(body, "s3cret") {
		t.Errorf("/pods shows an environment value, or hides the name:\n%s", body)
	}
	if pods.Pods()[0].Spec.Containers[0].Env[0].Value != "s3cret" {
		t.Errorf("/pods changed the controller's pod")
	}
	if body := get("/metrics/state"); !strings.Contains(body, `pod="web"`) || !strings.Contains(body, "kube_node_info") {
		t.Errorf("/metrics/state without web's series:\n%s", body)
	}
	pods.set(nil)
	if body := get("/metrics/state"); strings.Contains(body, `pod="web"`) {
		t.Errorf("deleted pod's series still in /metrics/state:\n%s", body)
	}
}

type mutablePods struct {
	mu   sync.Mutex
	pods []corev1.Pod
}

func (m *mutablePods) Pods() []corev1.Pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.pods)
}

func (m *mutablePods) set(p []corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pods = p
}
