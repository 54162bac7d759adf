package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The decisions a worker makes, as pure functions of its views, so that
// tables can test them.

// defaultGrace is Kubernetes' default terminationGracePeriodSeconds;
// minGrace is kubelet's floor for it when it kills a pod.
const (
	defaultGrace = 30 * time.Second
	minGrace     = 2 * time.Second
)

// targetPod returns the pod a key should run: the desired one, or, when the
// key is not in the snapshot but its manifest file is in error (keep), the
// newest pod already running for it. It returns nil when the key should run
// nothing.
func targetPod(desired *corev1.Pod, keep bool, views map[types.UID]*podView) *corev1.Pod {
	if desired != nil {
		return desired
	}
	if !keep || len(views) == 0 {
		return nil
	}
	return slices.MaxFunc(sortedViews(views), func(a, b *podView) int {
		return a.createdAt.Compare(b.createdAt)
	}).pod
}

// stale returns the sandboxes to tear down because they are not target,
// oldest first.
func stale(target *corev1.Pod, views map[types.UID]*podView) []*podView {
	var out []*podView
	for _, v := range sortedViews(views) {
		if target == nil || v.pod.UID != target.UID {
			out = append(out, v)
		}
	}
	return out
}

// sortedViews returns views oldest first, then by UID, so that decisions do
// not depend on map order.
func sortedViews(views map[types.UID]*podView) []*podView {
	out := make([]*podView, 0, len(views))
	for _, v := range views {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *podView) int {
		return cmp.Or(a.createdAt.Compare(b.createdAt), cmp.Compare(a.pod.UID, b.pod.UID))
	})
	return out
}

// gracePeriod returns how long the pod's containers get between SIGTERM and
// SIGKILL when it is removed, as kubelet computes it.
func gracePeriod(pod *corev1.Pod) time.Duration {
	g := defaultGrace
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		g = time.Duration(*s) * time.Second
	}
	return max(g, minGrace)
}

// restartWanted reports whether a container that exited with exitCode is to
// be started again under policy.
func restartWanted(policy corev1.RestartPolicy, exitCode int) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// decision is what to do about one container now.
type decision struct {
	// start asks for attempt to be started. failedAt is the failure it
	// retries (the previous attempt's exit or a failed start), zero for a
	// first start.
	start    bool
	attempt  int
	failedAt time.Time
	// waiting is the container's state while it backs off; retryAt is when
	// to look again.
	waiting *corev1.ContainerStateWaiting
	retryAt time.Time
	// backoffKey is the back-off that failedAt counts against.
	backoffKey string
}

// decide applies the pod's restart policy and the container's back-off to
// its latest attempt. The back-off key is backoffKey(pod.UID, name), or
// the image's after a failed pull.
func decide(pod *corev1.Pod, name string, cv *containerView, b *backoff, now time.Time) decision {
	latest := cv.latest
	if latest != nil && latest.Phase == ContainerRunning {
		return decision{}
	}
	if latest != nil && latest.Phase == ContainerExited && !restartAfter(pod, name, cv) {
		return decision{}
	}
	d := decision{attempt: nextAttempt(latest)}
	key := backoffKey(pod.UID, name)
	switch {
	case cv.failure != nil:
		key = cmp.Or(cv.failure.backoffKey, key)
		d.failedAt = cv.failure.at
		d.waiting = &corev1.ContainerStateWaiting{Reason: cv.failure.reason, Message: cv.failure.message}
	case latest != nil && latest.Phase == ContainerExited:
		d.failedAt = latest.FinishedAt
		d.waiting = &corev1.ContainerStateWaiting{
			Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				b.delay(key), name, pod.Name, pod.Namespace, pod.UID),
		}
	}
	if !d.failedAt.IsZero() {
		d.backoffKey = key
	}
	if !d.failedAt.IsZero() && b.inBackoff(key, d.failedAt, now) {
		d.retryAt = b.retryAt(key, d.failedAt)
		return d
	}
	d.start, d.waiting = true, nil
	return d
}

// nextAttempt returns the attempt to start after latest. An attempt the
// runtime created but never ran is started again under the same number.
func nextAttempt(latest *ContainerState) int {
	switch {
	case latest == nil:
		return 0
	case latest.Phase == ContainerExited:
		return latest.Attempt + 1
	default:
		return latest.Attempt
	}
}

func backoffKey(uid types.UID, container string) string {
	return string(uid) + "/" + container
}
