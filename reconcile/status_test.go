package reconcile

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodPhase(t *testing.T) {
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	waiting := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}}
	exited := func(code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
	}
	restarting := waiting
	restarting.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1}
	always, onFailure, never := corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever

	tests := []struct {
		name     string
		policy   corev1.RestartPolicy
		statuses []corev1.ContainerStatus
		want     corev1.PodPhase
	}{
		{"not started", always, []corev1.ContainerStatus{waiting}, corev1.PodPending},
		{"one of two waiting", always, []corev1.ContainerStatus{running, waiting}, corev1.PodPending},
		{"running", always, []corev1.ContainerStatus{running, running}, corev1.PodRunning},
		{"running and crash-looping", always, []corev1.ContainerStatus{running, restarting}, corev1.PodRunning},
		{"all crash-looping", always, []corev1.ContainerStatus{restarting}, corev1.PodRunning},
		{"all exited, Always", always, []corev1.ContainerStatus{exited(0)}, corev1.PodRunning},
		{"succeeded", onFailure, []corev1.ContainerStatus{exited(0), exited(0)}, corev1.PodSucceeded},
		{"failed, Never", never, []corev1.ContainerStatus{exited(0), exited(1)}, corev1.PodFailed},
		{"failed, OnFailure restarting", onFailure, []corev1.ContainerStatus{exited(0), restarting}, corev1.PodRunning},
		{"one done, one running", never, []corev1.ContainerStatus{exited(0), running}, corev1.PodRunning},
	}
	for _, tt := range tests {
		if got := podPhase(tt.policy, tt.statuses); got != tt.want {
			t.Errorf("%s: phase = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestQOSClass(t *testing.T) {
	res := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	ctr := func(req, lim corev1.ResourceList) corev1.Container {
		return corev1.Container{Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
	}
	tests := []struct {
		name       string
		containers []corev1.Container
		init       []corev1.Container
		want       corev1.PodQOSClass
	}{
		{"nothing", []corev1.Container{{}}, nil, corev1.PodQOSBestEffort},
		{"zero requests", []corev1.Container{ctr(res("0", "0"), nil)}, nil, corev1.PodQOSBestEffort},
		{"equal", []corev1.Container{ctr(res("1", "1Gi"), res("1000m", "1Gi"))}, nil, corev1.PodQOSGuaranteed},
		{"limits only", []corev1.Container{ctr(nil, res("1", "1Gi"))}, nil, corev1.PodQOSGuaranteed},
		{"request below limit", []corev1.Container{ctr(res("500m", "1Gi"), res("1", "1Gi"))}, nil, corev1.PodQOSBurstable},
		{"no memory limit", []corev1.Container{ctr(res("1", ""), res("1", ""))}, nil, corev1.PodQOSBurstable},
		{"one container unlimited", []corev1.Container{ctr(nil, res("1", "1Gi")), {}}, nil, corev1.PodQOSBurstable},
		{"init container counts", []corev1.Container{{}}, []corev1.Container{ctr(res("100m", ""), nil)}, corev1.PodQOSBurstable},
	}
	for _, tt := range tests {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: tt.containers, InitContainers: tt.init}}
		if got := qosClass(pod); got != tt.want {
			t.Errorf("%s: qosClass = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestPodStatus checks every field of a pod whose first container runs
// after a crash and whose second backs off.
func TestPodStatus(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyAlways,
		Containers:    []corev1.Container{{Name: "a", Image: "img-a"}, {Name: "b", Image: "img-b"}},
	}}
	pod.Name, pod.Namespace, pod.UID = "web", "default", "uid"
	now := epoch.Add(time.Minute)
	crash := ContainerState{Name: "a", Attempt: 0, ID: "a0", Phase: ContainerExited, ExitCode: 137, Signal: 9,
		Reason: "OOMKilled", StartedAt: epoch, FinishedAt: epoch.Add(time.Second)}
	v := newPodView(&PodState{Pod: pod, Ready: true, CreatedAt: epoch, PodIPs: []string{"10.88.0.2", "fd00::2"},
		Containers: []ContainerState{
			crash,
			{Name: "a", Attempt: 1, ID: "a1", Phase: ContainerRunning, StartedAt: epoch.Add(2 * time.Second)},
			{Name: "b", Attempt: 0, ID: "b0", Phase: ContainerRunning, StartedAt: epoch},
			{Name: "b", Attempt: 1, ID: "b1", Phase: ContainerExited, ExitCode: 1, Reason: "Error",
				StartedAt: now.Add(-time.Second), FinishedAt: now},
		}})
	b := newBackoff()
	b.next(backoffKey("uid", "b"), now, now)
	earlier := metav1.NewTime(epoch)
	prev := &corev1.PodStatus{
		StartTime:  &earlier,
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: earlier}},
	}

	got := podStatus(statusInput{pod: pod, view: v, backoff: b, prev: prev, now: now})

	at := func(t time.Time) metav1.Time { return metav1.NewTime(t) }
	yes, no := true, false
	terminated := func(s ContainerState) *corev1.ContainerStateTerminated {
		return &corev1.ContainerStateTerminated{ExitCode: int32(s.ExitCode), Signal: int32(s.Signal), Reason: s.Reason,
			StartedAt: at(s.StartedAt), FinishedAt: at(s.FinishedAt), ContainerID: s.ID}
	}
	unready := corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "ContainersNotReady",
		Message: "containers with unready status: [b]", LastTransitionTime: at(now)}
	want := corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: at(now)},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: at(now)},
			withType(unready, corev1.PodReady),
			withType(unready, corev1.ContainersReady),
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: earlier},
		},
		PodIP:     "10.88.0.2",
		PodIPs:    []corev1.PodIP{{IP: "10.88.0.2"}, {IP: "fd00::2"}},
		StartTime: &earlier,
		QOSClass:  corev1.PodQOSBestEffort,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:                 "a",
			State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(epoch.Add(2 * time.Second))}},
			LastTerminationState: corev1.ContainerState{Terminated: terminated(crash)},
			Ready:                true,
			RestartCount:         1,
			Image:                "img-a",
			ContainerID:          "a1",
			Started:              &yes,
		}, {
			Name: "b",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: "back-off 10s restarting failed container=b pod=web_default(uid)"}},
			LastTerminationState: corev1.ContainerState{Terminated: terminated(ContainerState{
				ExitCode: 1, Reason: "Error", StartedAt: now.Add(-time.Second), FinishedAt: now, ID: "b1"})},
			RestartCount: 1,
			Image:        "img-b",
			ContainerID:  "b1",
			Started:      &no,
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestPodStatusProblem(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	problem := &podProblem{reason: "NetworkSetupError", err: errors.New("set up pod network: range is full")}
	got := podStatus(statusInput{pod: pod, backoff: newBackoff(), problem: problem, now: epoch})
	if got.Phase != corev1.PodPending || got.Reason != "NetworkSetupError" || got.Message != "set up pod network: range is full" {
		t.Errorf("phase, reason, message = %s, %q, %q", got.Phase, got.Reason, got.Message)
	}
	if w := got.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "ContainerCreating" {
		t.Errorf("container state = %+v, want Waiting ContainerCreating", got.ContainerStatuses[0].State)
	}
	if c := got.Conditions[0]; c.Type != corev1.PodReadyToStartContainers || c.Status != corev1.ConditionFalse {
		t.Errorf("condition = %+v, want PodReadyToStartContainers False", c)
	}
}

func TestNodeDescribe(t *testing.T) {
	started := metav1.NewTime(epoch)
	node := Node{Name: "node-1", IPs: func() []string { return []string{"192.0.2.7", "2001:db8::7"} }}
	for _, tc := range []struct {
		name        string
		hostNetwork bool
		podIP       string
		wantPodIPs  []corev1.PodIP
	}{
		{name: "pod network", podIP: "10.85.0.2", wantPodIPs: []corev1.PodIP{{IP: "10.85.0.2"}}},
		{name: "host network", hostNetwork: true, wantPodIPs: []corev1.PodIP{{IP: "192.0.2.7"}, {IP: "2001:db8::7"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: tc.hostNetwork, NodeName: "from-manifest"}}
			p.Status.StartTime = &started
			if tc.podIP != "" {
				p.Status.PodIP, p.Status.PodIPs = tc.podIP, []corev1.PodIP{{IP: tc.podIP}}
			}
			node.describe(p)
			if p.Spec.NodeName != "node-1" || !p.CreationTimestamp.Equal(&started) {
				t.Errorf("nodeName %q, creationTimestamp %v; want node-1, %v", p.Spec.NodeName, p.CreationTimestamp, started)
			}
			wantHost := []corev1.HostIP{{IP: "192.0.2.7"}, {IP: "2001:db8::7"}}
			if p.Status.HostIP != "192.0.2.7" || !cmp.Equal(p.Status.HostIPs, wantHost) {
				t.Errorf("hostIP %q, hostIPs %v; want 192.0.2.7, %v", p.Status.HostIP, p.Status.HostIPs, wantHost)
			}
			if p.Status.PodIP != tc.wantPodIPs[0].IP || !cmp.Equal(p.Status.PodIPs, tc.wantPodIPs) {
				t.Errorf("podIP %q, podIPs %v; want %v", p.Status.PodIP, p.Status.PodIPs, tc.wantPodIPs)
			}
		})
	}
}
