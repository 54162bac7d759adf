package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeImages pulls images in memory: an image fails with its error, hangs
// until its pull is cancelled, or is present as "id-<image>".
type fakeImages struct {
	log *transcript

	mu   sync.Mutex
	errs map[string]error
	hang map[string]bool
}

func newFakeImages(log *transcript) *fakeImages {
	return &fakeImages{log: log, errs: map[string]error{}, hang: map[string]bool{}}
}

func (f *fakeImages) EnsureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (string, error) {
	f.log.add("pull %s %s", pod.UID, c.Image)
	f.mu.Lock()
	err, hang := f.errs[c.Image], f.hang[c.Image]
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		f.log.add("pull cancelled %s %s", pod.UID, c.Image)
		return "", ctx.Err()
	}
	if err != nil {
		return "", err
	}
	return "id-" + c.Image, nil
}

func (f *fakeImages) set(image string, err error, hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[image], f.hang[image] = err, hang
}

func (h *harness) pulls() int {
	n := 0
	for _, c := range h.log.get() {
		if strings.HasPrefix(c, "pull ") && !strings.HasPrefix(c, "pull cancelled") {
			n++
		}
	}
	return n
}

// poll waits until cond holds, for conditions no controller turn
// announces (a call the worker is blocked in).
func (h *harness) poll(what string, cond func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\ncalls: %q", what, h.log.get())
		}
	}
}

// poke wakes the pod's worker without moving the clock, as a resync does.
func (h *harness) poke(uid string) {
	h.rt.events <- types.UID(uid)
}

func withImage(image string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Image = image }
}

// TestImagePullBackOff follows kubelet: a failed pull shows ErrImagePull
// with the registry's message, later syncs ImagePullBackOff, and the
// pull is retried after 10 s, then 20 s, ...; once it succeeds the
// container runs the image EnsureImage returned.
func TestImagePullBackOff(t *testing.T) {
	h := newHarness(t)
	images := newFakeImages(h.log)
	h.images = images
	images.set("busybox:1.36", errors.New("GET https://registry/v2/busybox/manifests/1.36: MANIFEST_UNKNOWN"), false)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withImage("busybox:1.36"))))

	cs := h.waitWaiting("default/web", "web", "ErrImagePull", 0)
	if !strings.Contains(cs.State.Waiting.Message, "MANIFEST_UNKNOWN") {
		t.Errorf("ErrImagePull message %q, want the registry's", cs.State.Waiting.Message)
	}
	h.poke("web-1")
	cs = h.waitWaiting("default/web", "web", "ImagePullBackOff", 0)
	if want := `Back-off pulling image "busybox:1.36"`; cs.State.Waiting.Message != want {
		t.Errorf("ImagePullBackOff message %q, want %q", cs.State.Waiting.Message, want)
	}
	for pull, delay := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		h.clock.Step(delay - time.Second)
		h.poke("web-1")
		h.waitWaiting("default/web", "web", "ImagePullBackOff", 0)
		if got := h.pulls(); got != pull+1 {
			t.Fatalf("%d pulls %s before the back-off of %s expired, want %d", got, time.Second, delay, pull+1)
		}
		h.clock.Step(time.Second)
		h.eventually(fmt.Sprintf("pull %d", pull+2), func() bool { return h.pulls() == pull+2 })
		// The failure shows as ErrImagePull until the next sync, which
		// may come at once (the poke above): only the back-off is sure.
		h.poke("web-1")
		h.waitWaiting("default/web", "web", "ImagePullBackOff", 0)
	}
	images.set("busybox:1.36", nil, false)
	h.clock.Step(80 * time.Second)
	h.waitStarted("default/web", "web-1", "web", 0)
	if cs, _ := h.containerStatus("default/web", "web"); cs.ImageID != "id-busybox:1.36" || cs.Image != "busybox:1.36" {
		t.Errorf("image %q, imageID %q; want the image as written and the ID EnsureImage returned", cs.Image, cs.ImageID)
	}
	if cs, _ := h.containerStatus("default/web", "web"); cs.RestartCount != 0 {
		t.Errorf("restartCount %d after failed pulls, want 0", cs.RestartCount)
	}
}

// TestImageNeverPull: a missing image with pull policy Never waits with
// kubelet's reason and message, without turning into ImagePullBackOff.
func TestImageNeverPull(t *testing.T) {
	h := newHarness(t)
	images := newFakeImages(h.log)
	h.images = images
	msg := `Container image "busybox:1.36" is not present with pull policy of Never`
	images.set("busybox:1.36", &StartError{Reason: "ErrImageNeverPull", Err: errors.New(msg)}, false)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withImage("busybox:1.36"))))
	cs := h.waitWaiting("default/web", "web", "ErrImageNeverPull", 0)
	if cs.State.Waiting.Message != msg {
		t.Errorf("message %q, want %q", cs.State.Waiting.Message, msg)
	}
	h.poke("web-1")
	h.waitWaiting("default/web", "web", "ErrImageNeverPull", 0)
	if got := h.rt.state(); !slices.Equal(got, []string{"web-1:"}) {
		t.Errorf("runtime %q, want the sandbox without containers", got)
	}
}

// TestPullCancelled: a pull in progress is cancelled when its pod is
// edited (the new pod pulls its own image) or deleted, and is not
// reported as a failure.
func TestPullCancelled(t *testing.T) {
	h := newHarness(t)
	images := newFakeImages(h.log)
	h.images = images
	images.set("slow:1", nil, true)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withImage("slow:1"))))
	h.poll("the pull", func() bool { return h.pulls() == 1 })

	h.c.Update(snapshot(testPod("web", "web-2", withImage("busybox:1.36"))))
	h.waitStarted("default/web", "web-2", "web", 0)
	if !slices.Contains(h.log.get(), "pull cancelled web-1 slow:1") {
		t.Errorf("calls %q: the old pod's pull was not cancelled", h.log.get())
	}

	h.c.Update(snapshot(testPod("web", "web-3", withImage("slow:1"))))
	h.poll("the third pod's pull", func() bool { return h.pulls() == 3 })
	h.c.Update(snapshot())
	h.waitState()
	h.poll("the pull cancelled", func() bool {
		return slices.Contains(h.log.get(), "pull cancelled web-3 slow:1")
	})
	if _, ok := h.pod("default/web"); ok {
		t.Error("the deleted pod is still reported")
	}
}

// TestPullDoesNotBlockOtherPods: while one pod's pull hangs, another pod
// starts.
func TestPullDoesNotBlockOtherPods(t *testing.T) {
	h := newHarness(t)
	images := newFakeImages(h.log)
	h.images = images
	images.set("slow:1", nil, true)
	h.start()
	h.c.Update(snapshot(testPod("stuck", "stuck-1", withImage("slow:1"))))
	h.poll("the pull", func() bool { return h.pulls() == 1 })
	h.c.Update(snapshot(testPod("stuck", "stuck-1", withImage("slow:1")), testPod("web", "web-1")))
	h.waitStarted("default/web", "web-1", "web", 0)
	if cs, ok := h.containerStatus("default/stuck", "web"); !ok || cs.State.Waiting == nil || cs.State.Waiting.Reason != "ContainerCreating" {
		t.Errorf("stuck pod while pulling: %+v, want ContainerCreating", cs.State)
	}
}

// TestImagePullBackOffShared: two containers of a pod with the same image
// share its back-off, and their failed pulls in one sync count once.
func TestImagePullBackOffShared(t *testing.T) {
	h := newHarness(t)
	images := newFakeImages(h.log)
	h.images = images
	images.set("busybox:1.36", errors.New("unauthorized"), false)
	h.start()
	h.c.Update(snapshot(testPod("web", "web-1", withContainers("a", "b"), func(p *corev1.Pod) {
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].Image = "busybox:1.36"
		}
	})))
	h.poll("both pulls", func() bool { return h.pulls() == 2 })
	h.waitWaiting("default/web", "b", "ErrImagePull", 0)
	for _, step := range []struct {
		delay time.Duration
		pulls int
	}{{10 * time.Second, 4}, {20 * time.Second, 6}} {
		h.clock.Step(step.delay - time.Second)
		h.poke("web-1")
		h.waitWaiting("default/web", "a", "ImagePullBackOff", 0)
		if got := h.pulls(); got != step.pulls-2 {
			t.Fatalf("%d pulls before the back-off of %s expired, want %d", got, step.delay, step.pulls-2)
		}
		h.clock.Step(time.Second)
		h.poll(fmt.Sprintf("%d pulls", step.pulls), func() bool { return h.pulls() == step.pulls })
	}
}
