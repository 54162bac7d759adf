package agent

import (
	"maps"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// stateCollector exports, for the pods this agent runs and for its node,
// the series kube-state-metrics would export for them (its names, labels,
// units and semantics), so the kubernetes-mixin's rules and dashboards
// join them with /metrics/cadvisor as they do on a kubelet node. Every
// series is computed at scrape time from the controller's pod list: a
// deleted pod's series are gone at the next scrape.
type stateCollector struct {
	pods func() []corev1.Pod
	node stateNode
}

// stateNode is what the node families report.
type stateNode struct {
	name          string
	kernelVersion string
	osImage       string
	// runtimeVersion is container_runtime_version, "peapod://<version>".
	runtimeVersion string
	cpu            int
	memoryBytes    uint64
	internalIP     func() string
}

// readStateNode describes the host this agent runs on.
func readStateNode(name string, ips *hostIPs) stateNode {
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	n := stateNode{name: name, osImage: osImage(), runtimeVersion: "peapod://" + version, cpu: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		n.kernelVersion = unix.ByteSliceToString(u.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		n.memoryBytes = uint64(si.Totalram) * uint64(si.Unit)
	}
	n.internalIP = func() string {
		if all := ips.get(); len(all) > 0 {
			return all[0]
		}
		return ""
	}
	return n
}

// osImage is PRETTY_NAME of os-release, as kubelet reports node.status.nodeInfo.osImage.
func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

var (
	podLabels       = []string{"namespace", "pod", "uid"}
	containerLabels = []string{"namespace", "pod", "uid", "container"}

	ksmPodInfo = prometheus.NewDesc("kube_pod_info", "Information about pod.",
		append(podLabels, "host_ip", "pod_ip", "node", "created_by_kind", "created_by_name", "priority_class", "host_network"), nil)
	ksmPodOwner = prometheus.NewDesc("kube_pod_owner", "Information about the Pod's owner.",
		append(podLabels, "owner_kind", "owner_name", "owner_is_controller"), nil)
	ksmPodLabelsHelp = "Kubernetes labels converted to Prometheus labels."
	ksmPodStartTime  = prometheus.NewDesc("kube_pod_start_time", "Start time in unix timestamp for a pod.", podLabels, nil)
	ksmPodCreated    = prometheus.NewDesc("kube_pod_created", "Unix creation timestamp", podLabels, nil)
	ksmPodPhase      = prometheus.NewDesc("kube_pod_status_phase", "The pods current phase.", append(podLabels, "phase"), nil)
	ksmPodReady      = prometheus.NewDesc("kube_pod_status_ready", "Describes whether the pod is ready to serve requests.", append(podLabels, "condition"), nil)
	ksmPodScheduled  = prometheus.NewDesc("kube_pod_status_scheduled", "Describes the status of the scheduling process for the pod.", append(podLabels, "condition"), nil)

	ksmNodeInfo = prometheus.NewDesc("kube_node_info", "Information about a cluster node.",
		[]string{"node", "kernel_version", "os_image", "container_runtime_version", "kubelet_version", "kubeproxy_version", "provider_id", "pod_cidr", "system_uuid", "internal_ip"}, nil)
	ksmNodeCapacity    = prometheus.NewDesc("kube_node_status_capacity", "The capacity for different resources of a node.", []string{"node", "resource", "unit"}, nil)
	ksmNodeAllocatable = prometheus.NewDesc("kube_node_status_allocatable", "The allocatable for different resources of a node that are available for scheduling.", []string{"node", "resource", "unit"}, nil)
)

// containerDescs are one kind of container's families: kube_pod_container_*
// for containers, kube_pod_init_container_* for init containers.
type containerDescs struct {
	info, waiting, waitingReason, running, terminated, terminatedReason, lastTerminatedReason, ready, restarts, requests, limits *prometheus.Desc
}

func newContainerDescs(prefix, what string) containerDescs {
	d := func(suffix, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+suffix, help, append(containerLabels, extra...), nil)
	}
	return containerDescs{
		info:                 d("_info", "Information about a "+what+" in a pod.", "image_spec", "image", "image_id", "container_id"),
		waiting:              d("_status_waiting", "Describes whether the "+what+" is currently in waiting state."),
		waitingReason:        d("_status_waiting_reason", "Describes the reason the "+what+" is currently in waiting state.", "reason"),
		running:              d("_status_running", "Describes whether the "+what+" is currently in running state."),
		terminated:           d("_status_terminated", "Describes whether the "+what+" is currently in terminated state."),
		terminatedReason:     d("_status_terminated_reason", "Describes the reason the "+what+" is currently in terminated state.", "reason"),
		lastTerminatedReason: d("_status_last_terminated_reason", "Describes the last reason the "+what+" was in terminated state.", "reason"),
		ready:                d("_status_ready", "Describes whether the "+what+"'s readiness check succeeded."),
		restarts:             d("_status_restarts_total", "The number of restarts for the "+what+"."),
		requests:             d("_resource_requests", "The number of requested request resource by a "+what+".", "node", "resource", "unit"),
		limits:               d("_resource_limits", "The number of requested limit resource by a "+what+".", "node", "resource", "unit"),
	}
}

var (
	ksmContainer     = newContainerDescs("kube_pod_container", "container")
	ksmInitContainer = newContainerDescs("kube_pod_init_container", "init container")
)

// Describe sends nothing: kube_pod_labels has a label set per pod, which
// only an unchecked collector may export.
func (c *stateCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectNode(ch)
	pods := c.pods()
	for i := range pods {
		collectPod(ch, &pods[i])
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *stateCollector) collectNode(ch chan<- prometheus.Metric) {
	n := c.node
	gauge(ch, ksmNodeInfo, 1, n.name, n.kernelVersion, n.osImage, n.runtimeVersion, "", "", "", "", "", n.internalIP())
	for _, d := range []*prometheus.Desc{ksmNodeCapacity, ksmNodeAllocatable} {
		// Nothing is reserved for the system: allocatable is the capacity.
		gauge(ch, d, float64(n.cpu), n.name, "cpu", "core")
		if n.memoryBytes > 0 {
			gauge(ch, d, float64(n.memoryBytes), n.name, "memory", "byte")
		}
	}
}

// podPhases are the phases kube_pod_status_phase has a series for.
var podPhases = []corev1.PodPhase{corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown, corev1.PodRunning}

func collectPod(ch chan<- prometheus.Metric, p *corev1.Pod) {
	pl := []string{p.Namespace, p.Name, string(p.UID)}
	createdKind, createdName := "<none>", "<none>"
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			createdKind, createdName = o.Kind, o.Name
		}
	}
	gauge(ch, ksmPodInfo, 1, append(pl, p.Status.HostIP, p.Status.PodIP, p.Spec.NodeName, createdKind, createdName,
		p.Spec.PriorityClassName, boolString(p.Spec.HostNetwork))...)
	if len(p.OwnerReferences) == 0 {
		gauge(ch, ksmPodOwner, 1, append(pl, "<none>", "<none>", "<none>")...)
	}
	for _, o := range p.OwnerReferences {
		gauge(ch, ksmPodOwner, 1, append(pl, o.Kind, o.Name, boolString(o.Controller != nil && *o.Controller))...)
	}
	ch <- podLabelsMetric(p, pl)
	if p.Status.StartTime != nil {
		gauge(ch, ksmPodStartTime, float64(p.Status.StartTime.Unix()), pl...)
	}
	if !p.CreationTimestamp.IsZero() {
		gauge(ch, ksmPodCreated, float64(p.CreationTimestamp.Unix()), pl...)
	}
	if p.Status.Phase != "" {
		for _, ph := range podPhases {
			gauge(ch, ksmPodPhase, boolValue(p.Status.Phase == ph), append(pl, string(ph))...)
		}
	}
	for _, cond := range p.Status.Conditions {
		var d *prometheus.Desc
		switch cond.Type {
		case corev1.PodReady:
			d = ksmPodReady
		case corev1.PodScheduled:
			d = ksmPodScheduled
		default:
			continue
		}
		for _, s := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown} {
			gauge(ch, d, boolValue(cond.Status == s), append(pl, strings.ToLower(string(s)))...)
		}
	}
	collectContainers(ch, ksmContainer, p, pl, p.Spec.Containers, p.Status.ContainerStatuses)
	collectContainers(ch, ksmInitContainer, p, pl, p.Spec.InitContainers, p.Status.InitContainerStatuses)
}

// podLabelsMetric is kube_pod_labels with every pod label as label_<name>,
// "/", "." and "-" written "_", as kube-state-metrics does with
// --metric-labels-allowlist=pods=[*]. Its label set varies per pod, hence
// its own Desc; of two labels that sanitize to one name, the first in
// order is kept.
func podLabelsMetric(p *corev1.Pod, pl []string) prometheus.Metric {
	names := slices.Sorted(maps.Keys(p.Labels))
	seen := map[string]bool{}
	labelNames, values := slices.Clone(podLabels), slices.Clone(pl)
	for _, k := range names {
		n := "label_" + invalidLabelChars.ReplaceAllString(k, "_")
		if seen[n] {
			continue
		}
		seen[n] = true
		labelNames, values = append(labelNames, n), append(values, p.Labels[k])
	}
	d := prometheus.NewDesc("kube_pod_labels", ksmPodLabelsHelp, labelNames, nil)
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, 1, values...)
}

var invalidLabelChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func collectContainers(ch chan<- prometheus.Metric, d containerDescs, p *corev1.Pod, pl []string, specs []corev1.Container, statuses []corev1.ContainerStatus) {
	for _, c := range specs {
		cl := append(pl[:len(pl):len(pl)], c.Name)
		for _, r := range []struct {
			desc *prometheus.Desc
			list corev1.ResourceList
		}{{d.requests, c.Resources.Requests}, {d.limits, c.Resources.Limits}} {
			for name, q := range r.list {
				res, unit, v := resourceValue(name, q)
				gauge(ch, r.desc, v, append(cl, p.Spec.NodeName, res, unit)...)
			}
		}
	}
	for _, s := range statuses {
		cl := append(pl[:len(pl):len(pl)], s.Name)
		gauge(ch, d.info, 1, append(cl, specImage(specs, s.Name), s.Image, s.ImageID, s.ContainerID)...)
		gauge(ch, d.waiting, boolValue(s.State.Waiting != nil), cl...)
		if w := s.State.Waiting; w != nil && w.Reason != "" {
			gauge(ch, d.waitingReason, 1, append(cl, w.Reason)...)
		}
		gauge(ch, d.running, boolValue(s.State.Running != nil), cl...)
		gauge(ch, d.terminated, boolValue(s.State.Terminated != nil), cl...)
		if t := s.State.Terminated; t != nil && t.Reason != "" {
			gauge(ch, d.terminatedReason, 1, append(cl, t.Reason)...)
		}
		if t := s.LastTerminationState.Terminated; t != nil && t.Reason != "" {
			gauge(ch, d.lastTerminatedReason, 1, append(cl, t.Reason)...)
		}
		gauge(ch, d.ready, boolValue(s.Ready), cl...)
		ch <- prometheus.MustNewConstMetric(d.restarts, prometheus.CounterValue, float64(s.RestartCount), cl...)
	}
}

func specImage(specs []corev1.Container, name string) string {
	for _, c := range specs {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

// resourceValue is kube-state-metrics' resource label, unit label and value
// for a resource quantity: CPU in cores, memory and storage in bytes,
// anything else a count; names with "-" or "." get "_".
func resourceValue(name corev1.ResourceName, q resource.Quantity) (string, string, float64) {
	label := strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(string(name))
	switch {
	case name == corev1.ResourceCPU:
		return label, "core", float64(q.MilliValue()) / 1000
	case name == corev1.ResourceMemory, name == corev1.ResourceStorage, name == corev1.ResourceEphemeralStorage,
		strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix):
		return label, "byte", float64(q.Value())
	default:
		return label, "integer", float64(q.Value())
	}
}
