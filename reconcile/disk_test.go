package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

const mi = 1 << 20

// fakeDisk reports the usage a test sets for each pod UID.
type fakeDisk struct {
	log *transcript

	mu    sync.Mutex
	usage map[types.UID]DiskUsage
	err   error
}

func newFakeDisk(log *transcript) *fakeDisk {
	return &fakeDisk{log: log, usage: make(map[types.UID]DiskUsage)}
}

func (d *fakeDisk) DiskUsage(_ context.Context, pod *corev1.Pod) (DiskUsage, error) {
	d.log.add("measure %s", pod.UID)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage[pod.UID], d.err
}

func (d *fakeDisk) set(uid types.UID, u DiskUsage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.usage[uid] = u
}

func withEmptyDir(name, sizeLimit string, medium corev1.StorageMedium) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		ed := &corev1.EmptyDirVolumeSource{Medium: medium}
		if sizeLimit != "" {
			q := resource.MustParse(sizeLimit)
			ed.SizeLimit = &q
		}
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: ed}})
	}
}

// withStorageLimit sets the ephemeral-storage limit of the named container.
func withStorageLimit(container, limit string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range p.Spec.Containers {
			if c := &p.Spec.Containers[i]; c.Name == container {
				c.Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(limit)}
			}
		}
	}
}

func TestDiskEviction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mods    []func(*corev1.Pod)
		usage   DiskUsage
		limited bool
		want    string
	}{
		{
			name:  "no limits",
			mods:  []func(*corev1.Pod){withEmptyDir("data", "", "")},
			usage: DiskUsage{Volumes: map[string]int64{"data": 1 << 40}, Containers: map[string]int64{"web": 1 << 40}},
		},
		{
			name:    "emptyDir within its limit",
			mods:    []func(*corev1.Pod){withEmptyDir("data", "10Mi", "")},
			usage:   DiskUsage{Volumes: map[string]int64{"data": 10 * mi}},
			limited: true,
		},
		{
			name:    "emptyDir over its limit",
			mods:    []func(*corev1.Pod){withEmptyDir("data", "10Mi", "")},
			usage:   DiskUsage{Volumes: map[string]int64{"data": 10*mi + 1}},
			limited: true,
			want:    `Usage of EmptyDir volume "data" exceeds the limit "10Mi". `,
		},
		{
			name:  "Memory emptyDir: its tmpfs is the limit",
			mods:  []func(*corev1.Pod){withEmptyDir("mem", "1Mi", corev1.StorageMediumMemory)},
			usage: DiskUsage{Containers: map[string]int64{"web": 1 << 40}},
		},
		{
			name: "pod total over the sum of the containers' limits",
			mods: []func(*corev1.Pod){
				withContainers("a", "b"), withStorageLimit("a", "60Mi"), withStorageLimit("b", "40Mi"),
				withEmptyDir("data", "", ""),
			},
			usage:   DiskUsage{Volumes: map[string]int64{"data": 80 * mi}, Containers: map[string]int64{"a": 10 * mi, "b": 11 * mi}},
			limited: true,
			want:    "Pod ephemeral local storage usage exceeds the total limit of containers 100Mi. ",
		},
		{
			name: "container over its own limit, pod within the total",
			mods: []func(*corev1.Pod){
				withContainers("app", "other"), withStorageLimit("app", "50Mi"), withStorageLimit("other", "100Mi"),
			},
			usage:   DiskUsage{Containers: map[string]int64{"app": 50*mi + 4096, "other": 0}},
			limited: true,
			want:    `Container app exceeded its local ephemeral storage limit "50Mi". `,
		},
		{
			name: "the emptyDir is checked first",
			mods: []func(*corev1.Pod){
				withStorageLimit("web", "1Mi"), withEmptyDir("data", "1Mi", ""),
			},
			usage:   DiskUsage{Volumes: map[string]int64{"data": 2 * mi}, Containers: map[string]int64{"web": 2 * mi}},
			limited: true,
			want:    `Usage of EmptyDir volume "data" exceeds the limit "1Mi". `,
		},
		{
			name:  "a zero limit is no limit",
			mods:  []func(*corev1.Pod){withStorageLimit("web", "0"), withEmptyDir("data", "0", "")},
			usage: DiskUsage{Volumes: map[string]int64{"data": mi}, Containers: map[string]int64{"web": mi}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("web", "web-1", tc.mods...).Pod
			if got := hasDiskLimits(pod); got != tc.limited {
				t.Errorf("hasDiskLimits = %v, want %v", got, tc.limited)
			}
			if got := diskEviction(pod, tc.usage); got != tc.want {
				t.Errorf("diskEviction = %q, want %q", got, tc.want)
			}
		})
	}
}

func newDiskHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.disk = newFakeDisk(h.log)
	h.start()
	return h
}

func (h *harness) fakeDisk() *fakeDisk { return h.disk.(*fakeDisk) }

// measures counts the measurements of uid since call from.
func (h *harness) measures(from int, uid string) int {
	n := 0
	for _, c := range h.callsSince(from) {
		if c == "measure "+uid {
			n++
		}
	}
	return n
}

func TestDiskEvictsPodOverItsLimit(t *testing.T) {
	h := newDiskHarness(t)
	h.c.Update(snapshot(testPod("web", "web-1", withEmptyDir("data", "10Mi", ""), withGrace(30))))
	h.waitStarted("default/web", "web-1", "web", 0)

	h.fakeDisk().set("web-1", DiskUsage{Volumes: map[string]int64{"data": 11 * mi}})
	p := h.waitFailedAfterSteps("default/web")
	want := `Usage of EmptyDir volume "data" exceeds the limit "10Mi". `
	if p.Status.Reason != "Evicted" || p.Status.Message != want {
		t.Errorf("status reason %q, message %q; want Evicted, %q", p.Status.Reason, p.Status.Message, want)
	}
	if p.DeletionTimestamp != nil {
		t.Errorf("evicted pod has a deletionTimestamp")
	}
	cs := p.Status.ContainerStatuses[0]
	if term := cs.State.Terminated; term == nil || term.ExitCode != 137 || term.ContainerID != "peapod://web-1/web/0" || cs.Ready {
		t.Errorf("container status %+v, want terminated with exit code 137, not ready", cs)
	}
	// Killed at once (kubelet's floor on the grace period), not after the
	// pod's 30 s, and its network released.
	h.waitState()
	if calls := h.log.get(); !slices.Contains(calls, "remove web-1 2s") || !slices.Contains(calls, "teardown web-1") {
		t.Errorf("calls %q, want the pod removed with a 2s grace period and its network torn down", calls)
	}

	// It stays evicted: no start, no measurement, however long we wait.
	n := len(h.log.get())
	h.resyncs(5)
	if calls := h.callsSince(n); len(calls) > 0 {
		t.Errorf("an evicted pod was acted on again: %q", calls)
	}
	if p, _ := h.pod("default/web"); p.Status.Reason != "Evicted" {
		t.Errorf("after an hour the pod shows %s/%s, want still Evicted", p.Status.Phase, p.Status.Reason)
	}

	// An edited manifest is a new pod, which runs.
	h.c.Update(snapshot(testPod("web", "web-2", withEmptyDir("data", "10Mi", ""))))
	h.waitStarted("default/web", "web-2", "web", 0)
	if p, _ := h.pod("default/web"); p.Status.Phase != corev1.PodRunning || p.Status.Reason != "" {
		t.Errorf("edited pod: %s/%s, want Running with no reason", p.Status.Phase, p.Status.Reason)
	}
}

func TestDiskContainerLimit(t *testing.T) {
	h := newDiskHarness(t)
	h.c.Update(snapshot(testPod("web", "web-1",
		withContainers("app", "other"), withStorageLimit("app", "50Mi"), withStorageLimit("other", "100Mi"))))
	h.waitStarted("default/web", "web-1", "app", 0)
	h.fakeDisk().set("web-1", DiskUsage{Containers: map[string]int64{"app": 60 * mi}})
	p := h.waitFailedAfterSteps("default/web")
	if want := `Container app exceeded its local ephemeral storage limit "50Mi". `; p.Status.Message != want {
		t.Errorf("message %q, want %q", p.Status.Message, want)
	}
}

func TestDiskWithinLimitsKeepsRunning(t *testing.T) {
	h := newDiskHarness(t)
	h.c.Update(snapshot(
		testPod("web", "web-1", withEmptyDir("data", "10Mi", ""), withStorageLimit("web", "50Mi")),
		testPod("free", "free-1", withEmptyDir("data", "", "")),
	))
	h.waitStarted("default/web", "web-1", "web", 0)
	h.waitStarted("default/free", "free-1", "web", 0)
	h.fakeDisk().set("web-1", DiskUsage{Volumes: map[string]int64{"data": 10 * mi}, Containers: map[string]int64{"web": 40 * mi}})
	n := len(h.log.get())
	h.converge(func() bool { return h.measures(n, "web-1") >= 3 })
	if p, _ := h.pod("default/web"); p.Status.Phase != corev1.PodRunning {
		t.Errorf("pod within its limits: phase %s (%s), want Running", p.Status.Phase, p.Status.Message)
	}
	// A pod without disk limits is never measured.
	if h.measures(0, "free-1") != 0 {
		t.Errorf("pod without limits was measured: %q", h.log.get())
	}
	for _, c := range h.callsSince(n) {
		if strings.HasPrefix(c, "remove") {
			t.Errorf("call %q while within limits", c)
		}
	}
}

func TestDiskEvictsCrashLoopingPod(t *testing.T) {
	h := newDiskHarness(t)
	h.c.Update(snapshot(testPod("web", "web-1", withEmptyDir("data", "1Mi", ""))))
	// Measured at once, and again every 10 s; attempt 2 exits at 10 s and
	// backs off for 20 s.
	h.waitStarted("default/web", "web-1", "web", 0)
	h.rt.exit("web-1", "web", 1)
	h.waitStarted("default/web", "web-1", "web", 1)
	h.rt.exit("web-1", "web", 1)
	h.waitWaiting("default/web", "web", "CrashLoopBackOff", 1)
	h.clock.Step(diskCheckInterval)
	h.waitStarted("default/web", "web-1", "web", 2)
	h.rt.exit("web-1", "web", 1)
	h.waitWaiting("default/web", "web", "CrashLoopBackOff", 2)

	// The container wrote and crashed: the pod is still active while it
	// backs off, and measured at 20 s.
	h.fakeDisk().set("web-1", DiskUsage{Volumes: map[string]int64{"data": 2 * mi}})
	h.clock.Step(diskCheckInterval)
	p := h.waitPhase("default/web", corev1.PodFailed)
	if p.Status.Reason != "Evicted" || slices.Contains(h.log.get(), "start web-1/web/3") {
		t.Errorf("crash-looping pod over its limit: %s/%s, calls %q; want evicted while it backed off", p.Status.Phase, p.Status.Reason, h.log.get())
	}
	if cs := p.Status.ContainerStatuses[0]; cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 1 || cs.RestartCount != 2 {
		t.Errorf("container status %+v, want attempt 2 terminated with its own exit code 1", cs)
	}
}

func TestDiskMeasurementErrorKeepsPodRunning(t *testing.T) {
	h := newDiskHarness(t)
	h.c.Update(snapshot(testPod("web", "web-1", withEmptyDir("data", "1Mi", ""))))
	h.waitStarted("default/web", "web-1", "web", 0)
	d := h.fakeDisk()
	d.mu.Lock()
	d.err = errors.New("walk: permission denied")
	d.usage["web-1"] = DiskUsage{Volumes: map[string]int64{"data": 2 * mi}}
	d.mu.Unlock()
	n := len(h.log.get())
	h.converge(func() bool { return h.measures(n, "web-1") >= 2 })
	if p, _ := h.pod("default/web"); p.Status.Phase != corev1.PodRunning {
		t.Errorf("a pod whose measurement failed is %s (%s), want Running", p.Status.Phase, p.Status.Message)
	}
}

func TestDiskNotMeasuredOnceContainersExited(t *testing.T) {
	h := newDiskHarness(t)
	h.c.Update(snapshot(testPod("job", "job-1", withPolicy(corev1.RestartPolicyNever), withEmptyDir("data", "1Mi", ""))))
	h.waitStarted("default/job", "job-1", "web", 0)
	h.rt.exit("job-1", "web", 0)
	h.waitPhase("default/job", corev1.PodSucceeded)
	h.fakeDisk().set("job-1", DiskUsage{Volumes: map[string]int64{"data": 2 * mi}})
	n := len(h.log.get())
	h.resyncs(3)
	if got := h.measures(n, "job-1"); got != 0 {
		t.Errorf("a pod whose containers all exited was measured %d times", got)
	}
	h.waitPhase("default/job", corev1.PodSucceeded)
}

// waitFailedAfterSteps steps the clock until the pod is Failed, and
// returns it.
func (h *harness) waitFailedAfterSteps(key string) corev1.Pod {
	h.t.Helper()
	var p corev1.Pod
	h.converge(func() bool {
		var ok bool
		p, ok = h.pod(key)
		return ok && p.Status.Phase == corev1.PodFailed
	})
	return p
}

// resyncs steps the clock by the resync period n times, each time giving
// the workers a moment to act on it.
func (h *harness) resyncs(n int) {
	for range n {
		h.clock.Step(time.Hour)
		select {
		case <-h.turned:
		case <-time.After(100 * time.Millisecond):
		}
	}
}
