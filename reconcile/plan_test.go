package reconcile

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestBackoff replays kubelet's CrashLoopBackOff for a container that exits
// as soon as it starts: no wait before the first restart, then 10 s
// doubling to 5 min, and back to 10 s once a run lasted over 10 min.
func TestBackoff(t *testing.T) {
	b := newBackoff()
	now := epoch
	var waits []time.Duration
	for range 9 {
		failedAt := now
		for b.inBackoff("k", failedAt, now) {
			now = now.Add(time.Second)
		}
		waits = append(waits, now.Sub(failedAt))
		b.next("k", failedAt, now)
	}
	want := []time.Duration{0, 10, 20, 40, 80, 160, 300, 300, 300}
	for i := range want {
		want[i] *= time.Second
	}
	if diff := cmp.Diff(want, waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}

	// A run of just over 10 min is forgiven.
	failedAt := now.Add(backoffReset + time.Second)
	if b.inBackoff("k", failedAt, failedAt) {
		t.Error("still backing off after a 10 min run")
	}
	b.next("k", failedAt, failedAt)
	if got := b.delay("k"); got != initialBackoff {
		t.Errorf("delay after a long run = %s, want %s", got, initialBackoff)
	}
}

func TestDecide(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure}}
	pod.Name, pod.Namespace, pod.UID = "web", "default", "uid"
	exited := func(code int) *ContainerState {
		return &ContainerState{Attempt: 2, Phase: ContainerExited, ExitCode: code, FinishedAt: epoch}
	}
	crashLoop := &corev1.ContainerStateWaiting{
		Reason:  "CrashLoopBackOff",
		Message: "back-off 10s restarting failed container=c pod=web_default(uid)",
	}
	tests := []struct {
		name    string
		cv      containerView
		backoff bool // the key has a 10 s back-off from epoch
		now     time.Time
		want    decision
	}{
		{name: "never started", want: decision{start: true}},
		{name: "created, not started", cv: containerView{latest: &ContainerState{Attempt: 1, Phase: ContainerCreated}},
			want: decision{start: true, attempt: 1}},
		{name: "running", cv: containerView{latest: &ContainerState{Phase: ContainerRunning}}, want: decision{}},
		{name: "succeeded, OnFailure", cv: containerView{latest: exited(0)}, want: decision{}},
		{name: "first failure restarts at once", cv: containerView{latest: exited(1)}, now: epoch,
			want: decision{start: true, attempt: 3, failedAt: epoch}},
		{name: "failure in back-off", cv: containerView{latest: exited(1)}, backoff: true, now: epoch.Add(9 * time.Second),
			want: decision{attempt: 3, failedAt: epoch, waiting: crashLoop, retryAt: epoch.Add(10 * time.Second)}},
		{name: "failure after back-off", cv: containerView{latest: exited(1)}, backoff: true, now: epoch.Add(10 * time.Second),
			want: decision{start: true, attempt: 3, failedAt: epoch}},
		{name: "start error in back-off",
			cv:      containerView{failure: &startFailure{at: epoch, reason: "CreateContainerError", message: "bad"}},
			backoff: true, now: epoch.Add(time.Second),
			want: decision{failedAt: epoch, retryAt: epoch.Add(10 * time.Second),
				waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: "bad"}}},
		{name: "failed pull: the image's back-off, not the container's",
			cv:      containerView{failure: &startFailure{at: epoch, reason: "ImagePullBackOff", message: "m", backoffKey: "uid_img"}},
			backoff: true, now: epoch.Add(time.Second),
			want: decision{start: true, attempt: 0, failedAt: epoch, backoffKey: "uid_img"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff()
			if tt.backoff {
				b.next(backoffKey(pod.UID, "c"), epoch, epoch)
			}
			if !tt.want.failedAt.IsZero() && tt.want.backoffKey == "" {
				tt.want.backoffKey = backoffKey(pod.UID, "c")
			}
			got := decide(pod, "c", &tt.cv, b, tt.now)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(decision{})); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRestartWanted(t *testing.T) {
	for _, tt := range []struct {
		policy corev1.RestartPolicy
		code   int
		want   bool
	}{
		{corev1.RestartPolicyAlways, 0, true},
		{corev1.RestartPolicyAlways, 137, true},
		{corev1.RestartPolicyOnFailure, 0, false},
		{corev1.RestartPolicyOnFailure, 1, true},
		{corev1.RestartPolicyNever, 1, false},
	} {
		if got := restartWanted(tt.policy, tt.code); got != tt.want {
			t.Errorf("restartWanted(%s, %d) = %v, want %v", tt.policy, tt.code, got, tt.want)
		}
	}
}

func TestTargetAndStale(t *testing.T) {
	view := func(uid types.UID, age time.Duration) *podView {
		v := &podView{pod: &corev1.Pod{}, createdAt: epoch.Add(-age)}
		v.pod.UID = uid
		return v
	}
	views := map[types.UID]*podView{"old": view("old", time.Hour), "new": view("new", time.Minute)}
	desired := &corev1.Pod{}
	desired.UID = "next"
	tests := []struct {
		name       string
		desired    *corev1.Pod
		keep       bool
		wantTarget types.UID
		wantStale  []types.UID
	}{
		{"edit", desired, false, "next", []types.UID{"old", "new"}},
		{"deleted", nil, false, "", []types.UID{"old", "new"}},
		{"file broken: keep the newest", nil, true, "new", []types.UID{"old"}},
		{"desired wins over keep", desired, true, "next", []types.UID{"old", "new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := targetPod(tt.desired, tt.keep, views)
			if uidOf(target) != tt.wantTarget {
				t.Errorf("target = %q, want %q", uidOf(target), tt.wantTarget)
			}
			var got []types.UID
			for _, v := range stale(target, views) {
				got = append(got, v.pod.UID)
			}
			if diff := cmp.Diff(tt.wantStale, got); diff != "" {
				t.Errorf("stale (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGracePeriod(t *testing.T) {
	secs := func(n int64) *int64 { return &n }
	for _, tt := range []struct {
		seconds *int64
		want    time.Duration
	}{
		{nil, 30 * time.Second},
		{secs(0), 2 * time.Second},
		{secs(90), 90 * time.Second},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: tt.seconds}}
		if got := gracePeriod(pod); got != tt.want {
			t.Errorf("gracePeriod(%v) = %s, want %s", tt.seconds, got, tt.want)
		}
	}
}

// TestRecordConverges merges the same observations in every order: the
// view must end at the latest attempt in its last phase, with the attempt
// before it as previous.
func TestRecordConverges(t *testing.T) {
	states := []ContainerState{
		{Attempt: 0, Phase: ContainerRunning},
		{Attempt: 0, Phase: ContainerExited, ExitCode: 1},
		{Attempt: 1, Phase: ContainerCreated},
		{Attempt: 1, Phase: ContainerRunning, ID: "1"},
		{Attempt: 1, Phase: ContainerExited, ExitCode: 2, ID: "1"},
		{Attempt: 2, Phase: ContainerRunning, ID: "2"},
	}
	want := containerView{latest: &states[5], previous: &states[4]}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		var cv containerView
		for _, i := range r.Perm(len(states)) {
			cv.record(states[i], true)
		}
		if diff := cmp.Diff(want, cv, cmp.AllowUnexported(containerView{})); diff != "" {
			t.Fatalf("view (-want +got):\n%s", diff)
		}
	}
}
