package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPrintPods(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Minute)}}
	twoContainers := corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}
	readyCond := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}

	pods := []corev1.Pod{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", CreationTimestamp: ago(5 * time.Minute)},
			Spec:       twoContainers,
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: "10.85.0.2", Conditions: readyCond,
				ContainerStatuses: []corev1.ContainerStatus{
					{Name: "a", Ready: true, State: running},
					{Name: "b", Ready: true, State: running, RestartCount: 2, LastTerminationState: corev1.ContainerState{
						Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(90 * time.Second)},
					}},
				},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "crash", CreationTimestamp: ago(2 * time.Hour)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}},
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{
					Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"},
				}}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "killed"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}},
			Status: corev1.PodStatus{
				Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{
					Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9},
				}}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "evict"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}},
			Status: corev1.PodStatus{
				Phase: corev1.PodFailed, Reason: "Evicted",
				ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{
					Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"},
				}}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "going", DeletionTimestamp: &metav1.Time{Time: now}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		},
	}
	var b strings.Builder
	if err := PrintPods(&b, pods, now); err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE   NAME     READY   STATUS             RESTARTS      AGE         IP
default     web      2/2     Running            2 (90s ago)   5m          10.85.0.2
default     crash    0/1     CrashLoopBackOff   0             120m        <none>
jobs        killed   0/1     Signal:9           0             <unknown>   <none>
jobs        evict    0/1     Evicted            0             <unknown>   <none>
default     going    0/1     Terminating        0             <unknown>   <none>
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("PrintPods mismatch (-want +got):\n%s", diff)
	}
}

// TestPrintInitializingPods checks the STATUS, READY and RESTARTS columns
// of pods with init containers and sidecars against what kubectl prints.
func TestPrintInitializingPods(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	always := corev1.ContainerRestartPolicyAlways
	spec := corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "proxy", RestartPolicy: &always}, {Name: "one"}, {Name: "two"}},
		Containers:     []corev1.Container{{Name: "app"}},
	}
	yes, no := true, false
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
	initializing := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	notInitialized := []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionFalse}}
	pod := func(name string, conds []corev1.PodCondition, app corev1.ContainerStatus, init ...corev1.ContainerStatus) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(now.Add(-time.Minute))},
			Spec:       spec,
			Status:     corev1.PodStatus{Phase: corev1.PodPending, Conditions: conds, InitContainerStatuses: init, ContainerStatuses: []corev1.ContainerStatus{app}},
		}
	}
	app := corev1.ContainerStatus{Name: "app", State: initializing}
	pods := []corev1.Pod{
		pod("sidecar-starting", notInitialized, app,
			corev1.ContainerStatus{Name: "proxy", State: running, Started: &no},
			corev1.ContainerStatus{Name: "one", State: initializing}, corev1.ContainerStatus{Name: "two", State: initializing}),
		pod("second", notInitialized, app,
			corev1.ContainerStatus{Name: "proxy", State: running, Started: &yes, Ready: true},
			corev1.ContainerStatus{Name: "one", State: done}, corev1.ContainerStatus{Name: "two", State: running}),
		pod("crashing", notInitialized, app,
			corev1.ContainerStatus{Name: "proxy", State: running, Started: &yes},
			corev1.ContainerStatus{Name: "one", RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			corev1.ContainerStatus{Name: "two", State: initializing}),
		pod("failed", notInitialized, app,
			corev1.ContainerStatus{Name: "proxy", State: running, Started: &yes},
			corev1.ContainerStatus{Name: "one", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}},
			corev1.ContainerStatus{Name: "two", State: initializing}),
		pod("starting-app", []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}}, app,
			corev1.ContainerStatus{Name: "proxy", State: running, Started: &yes, Ready: true, RestartCount: 1},
			corev1.ContainerStatus{Name: "one", State: done}, corev1.ContainerStatus{Name: "two", State: done}),
	}
	var b strings.Builder
	if err := PrintPods(&b, pods, now); err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE   NAME               READY   STATUS                  RESTARTS   AGE   IP
default     sidecar-starting   0/2     Init:0/3                0          60s   <none>
default     second             1/2     Init:2/3                0          60s   <none>
default     crashing           0/2     Init:CrashLoopBackOff   3          60s   <none>
default     failed             0/2     Init:Error              0          60s   <none>
default     starting-app       1/2     PodInitializing         1          60s   <none>
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("PrintPods mismatch (-want +got):\n%s", diff)
	}
}
