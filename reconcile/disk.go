package reconcile

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

// Local ephemeral storage limits, enforced as kubelet's eviction manager
// does for emptyDir.sizeLimit and resources.limits[ephemeral-storage]: the
// worker of a pod that has such a limit measures the pod's usage through a
// DiskMeter every check interval until the pod has finished, and
// evicts the pod when a limit is exceeded: every container is killed
// (grace minGrace), its sandbox removed with the data that broke the limit,
// and the pod reported Failed with reason Evicted and kubelet's message.
// The measurement runs on the pod's worker, which it holds for its
// duration (about 2 ms per thousand files), and is spaced to at least
// diskDutyFactor times its last duration.
//
// An evicted pod is not started again while its manifest is unchanged: a
// pod that fills its disk as soon as it runs would otherwise fill it again
// every few seconds. Kubelet refuses to evict static pods at all (they are
// "critical" and would not be re-admitted, kubernetes#40573); peapod, whose
// pods are all static, evicts them because the manifest asked for the
// limit, and keeps kubelet's rule that they are not re-admitted. Editing
// the manifest (a new UID) starts the pod afresh; so does an agent
// restart, which forgets evictions along with the rest of its status.

// DiskMeter measures a pod's local ephemeral storage.
type DiskMeter interface {
	// DiskUsage returns the bytes the pod holds on local disk. It may be
	// called while the pod's containers run and write.
	DiskUsage(ctx context.Context, pod *corev1.Pod) (DiskUsage, error)
}

// DiskUsage is a pod's local ephemeral storage, in bytes allocated on disk.
type DiskUsage struct {
	// Volumes holds the usage of each disk-backed emptyDir, by volume
	// name. Memory emptyDirs are tmpfs mounts of sizeLimit and do not
	// count, as in kubelet.
	Volumes map[string]int64
	// Containers holds the usage of each container, by name: its writable
	// layer and its logs.
	Containers map[string]int64
}

// Total is the pod's usage: its volumes and its containers.
func (u DiskUsage) Total() int64 {
	var n int64
	for _, b := range u.Volumes {
		n += b
	}
	for _, b := range u.Containers {
		n += b
	}
	return n
}

const (
	// diskCheckInterval is kubelet's housekeeping interval, at which its
	// eviction manager looks at local storage.
	diskCheckInterval = 10 * time.Second
	// diskDutyFactor spaces a pod's checks to at least this many times
	// the last check's duration: measuring a huge tree takes at most one
	// twentieth of a core.
	diskDutyFactor = 20
	// reasonEvicted is kubelet's pod status reason for an eviction.
	reasonEvicted = "Evicted"
)

// eviction records that the worker evicted its target pod.
type eviction struct {
	uid     types.UID
	message string
	at      time.Time
	// containers holds the latest attempt of each container when the pod
	// was evicted.
	containers map[string]ContainerState
}

// hasDiskLimits reports whether the pod has a limit that a disk
// measurement enforces.
func hasDiskLimits(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil && v.EmptyDir.Medium != corev1.StorageMediumMemory && positive(v.EmptyDir.SizeLimit) {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		if positive(c.Resources.Limits.StorageEphemeral()) {
			return true
		}
	}
	return false
}

// diskEviction returns kubelet's eviction message when usage exceeds one of
// the pod's local storage limits, "" when it exceeds none. The limits are
// checked in kubelet's order: each emptyDir's sizeLimit, then the pod's
// total against the sum of its containers' limits, then each container's
// writable layer and logs against its own.
func diskEviction(pod *corev1.Pod, u DiskUsage) string {
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil || !positive(v.EmptyDir.SizeLimit) {
			continue
		}
		if used, ok := u.Volumes[v.Name]; ok && used > v.EmptyDir.SizeLimit.Value() {
			return fmt.Sprintf("Usage of EmptyDir volume %q exceeds the limit %q. ", v.Name, v.EmptyDir.SizeLimit.String())
		}
	}
	if limit, ok := podStorageLimit(pod); ok && u.Total() > limit.Value() {
		return fmt.Sprintf("Pod ephemeral local storage usage exceeds the total limit of containers %s. ", limit.String())
	}
	for _, c := range allContainers(pod) {
		limit := c.Resources.Limits.StorageEphemeral()
		if positive(limit) && u.Containers[c.Name] > limit.Value() {
			return fmt.Sprintf("Container %s exceeded its local ephemeral storage limit %q. ", c.Name, limit.String())
		}
	}
	return ""
}

// podStorageLimit returns the sum of the containers' ephemeral-storage
// limits, as kubelet's pod limit; false when no container has one.
func podStorageLimit(pod *corev1.Pod) (resource.Quantity, bool) {
	var sum resource.Quantity
	found := false
	for _, c := range pod.Spec.Containers {
		if q := c.Resources.Limits.StorageEphemeral(); positive(q) {
			sum.Add(*q)
			found = true
		}
	}
	return sum, found
}

func positive(q *resource.Quantity) bool { return q != nil && q.Sign() > 0 }

// active reports whether the pod is not finished, as last published:
// kubelet's eviction manager looks only at active pods. A pod whose
// container crash-loops is active, even while no container runs.
func (w *worker) active(v *podView) bool {
	st := w.published(v.pod.UID)
	return st == nil || st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed
}

// checkDisk measures the target's local storage when a check is due, and
// evicts the pod when a limit is exceeded. It returns when to sync again:
// retryAt, or the next check if that comes first.
func (w *worker) checkDisk(ctx context.Context, v *podView, retryAt time.Time) time.Time {
	if w.c.disk == nil || !hasDiskLimits(v.pod) || !w.active(v) {
		return retryAt
	}
	now := w.c.clock.Now()
	if now.Before(v.diskCheckAt) {
		return earliest(retryAt, v.diskCheckAt)
	}
	usage, err := w.c.disk.DiskUsage(ctx, v.pod)
	took := w.c.clock.Since(now)
	v.diskCheckAt = now.Add(max(diskCheckInterval, diskDutyFactor*took))
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}
		}
		w.log.Warn("measure local storage", "uid", v.pod.UID, "err", err)
		return earliest(retryAt, v.diskCheckAt)
	}
	w.log.Debug("measured local storage", "uid", v.pod.UID, "bytes", usage.Total(), "took", took)
	if msg := diskEviction(v.pod, usage); msg != "" {
		return w.evict(ctx, v, msg)
	}
	return earliest(retryAt, v.diskCheckAt)
}

// evict records the eviction of the target and removes its sandbox.
func (w *worker) evict(ctx context.Context, v *podView, message string) time.Time {
	e := &eviction{uid: v.pod.UID, message: message, at: w.c.clock.Now(), containers: map[string]ContainerState{}}
	for name, cv := range v.containers {
		if cv.latest != nil {
			e.containers[name] = *cv.latest
		}
	}
	w.evicted = e
	w.log.Warn("evicting pod", "uid", v.pod.UID, "reason", reasonEvicted, "message", message)
	return w.stayEvicted(ctx, v.pod)
}

// evictionOf returns the eviction of the pod with uid, if it was evicted.
func (w *worker) evictionOf(uid types.UID) *eviction {
	if w.evicted != nil && w.evicted.uid == uid {
		return w.evicted
	}
	return nil
}

// evictedTarget returns the eviction of target, if it was evicted, and
// forgets the eviction of any other pod: an edited manifest starts afresh.
func (w *worker) evictedTarget(target *corev1.Pod) *eviction {
	if w.evicted != nil && w.evicted.uid != uidOf(target) {
		w.evicted = nil
	}
	return w.evicted
}

// stayEvicted makes sure the evicted target's sandbox is gone.
func (w *worker) stayEvicted(ctx context.Context, target *corev1.Pod) time.Time {
	if v := w.views[target.UID]; v != nil {
		if err := w.remove(ctx, v); err != nil {
			return w.fail(ctx, err)
		}
	}
	w.succeeded()
	return time.Time{}
}

// evictedStatus is the status of an evicted pod: Failed, with kubelet's
// reason and message, every container terminated.
func evictedStatus(in statusInput) corev1.PodStatus {
	e := in.evicted
	st := corev1.PodStatus{
		Phase:     corev1.PodFailed,
		Reason:    reasonEvicted,
		Message:   e.message,
		QOSClass:  qosClass(in.pod),
		StartTime: startTime(in),
	}
	for _, c := range in.pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, evictedContainer(c, e))
	}
	st.Conditions = conditions(in, st)
	return st
}

// evictedContainer reports a container of an evicted pod: as it exited, or
// killed (exit code 137) if it ran, or, if it never ran, as kubelet reports
// a container it cannot find when a pod terminates.
func evictedContainer(c corev1.Container, e *eviction) corev1.ContainerStatus {
	started := false
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: &started}
	s, ok := e.containers[c.Name]
	if !ok {
		cs.State.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: 137, Reason: "ContainerStatusUnknown",
			Message: "The container could not be located when the pod was terminated",
		}
		return cs
	}
	cs.RestartCount, cs.ContainerID = int32(s.Attempt), s.ID
	if s.Phase != ContainerExited {
		s.ExitCode, s.Reason, s.FinishedAt = 137, "Error", e.at
	}
	cs.State.Terminated = terminated(&s)
	return cs
}
