package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func imgPod(name, image, policy string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %q, imagePullPolicy: %q, command: [sleep, "100000"]}
`, name, image, policy)
}

// imgWaiting returns a check that the pod's container waits with reason
// and a message containing msg.
func imgWaiting(reason, msg string) func(*corev1.Pod) error {
	return func(p *corev1.Pod) error {
		if len(p.Status.ContainerStatuses) != 1 {
			return fmt.Errorf("%d container statuses", len(p.Status.ContainerStatuses))
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		if w == nil || w.Reason != reason || !strings.Contains(w.Message, msg) {
			return fmt.Errorf("state %+v, want waiting %s with %q", p.Status.ContainerStatuses[0].State, reason, msg)
		}
		return nil
	}
}

// TestImagePullPolicy drives pods whose image is missing: with
// imagePullPolicy Never they wait with ErrImageNeverPull; otherwise
// ErrImagePull, then ImagePullBackOff, and they start once the image
// appears (Never included: it needs the image present, not pulled). A
// running pod reports its image as written and its imageID.
func TestImagePullPolicy(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	late := filepath.Join(t.TempDir(), "late")

	a.writeManifest("never.yaml", imgPod("never", "rootfs:"+late, "Never"))
	a.writeManifest("late.yaml", imgPod("late", "rootfs:"+late, ""))
	// A registry on loopback where nothing listens: the test never
	// reaches beyond the machine.
	a.writeManifest("registry.yaml", imgPod("registry", "127.0.0.1:9/team/busybox:1.36", "IfNotPresent"))
	a.writeManifest("web.yaml", imgPod("web", a.Image, "IfNotPresent"))

	a.waitPod("default/never", "ErrImageNeverPull", 30*time.Second,
		imgWaiting("ErrImageNeverPull", fmt.Sprintf("Container image %q is not present with pull policy of Never", "rootfs:"+late)))
	a.waitPod("default/registry", "ErrImagePull", 30*time.Second, imgWaiting("ErrImagePull", "connection refused"))
	a.waitPod("default/late", "ImagePullBackOff", 60*time.Second,
		imgWaiting("ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q", "rootfs:"+late)))
	web := a.waitPod("default/web", "running", 30*time.Second, running)
	if cs := web.Status.ContainerStatuses[0]; cs.Image != a.Image || cs.ImageID != a.Image {
		t.Errorf("image %q, imageID %q; want both %q", cs.Image, cs.ImageID, a.Image)
	}

	rootfs := strings.TrimPrefix(a.Image, "rootfs:")
	if err := os.Symlink(rootfs, late); err != nil {
		t.Fatal(err)
	}
	a.waitPod("default/late", "running once its image appeared", 90*time.Second, running)
	a.waitPod("default/never", "running once its image is present", 60*time.Second, running)
}
