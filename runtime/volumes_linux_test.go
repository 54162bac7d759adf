package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/peapod/peapod/reconcile"
)

func TestRootVolumesAndOOM(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	hostDir := filepath.Join(env.base, "host")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "hello"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirType := corev1.HostPathDirectory
	size := resource.MustParse("8Mi")
	writer := shellContainer("writer", `echo disk > /scratch/f && echo mem > /mem/f && mkdir -p /scratch/sub && echo sub > /scratch/sub/g && cat /host/hello && ! touch /host/x 2>/dev/null && df -k /mem | tail -1`)
	writer.VolumeMounts = []corev1.VolumeMount{
		{Name: "scratch", MountPath: "/scratch"},
		{Name: "mem", MountPath: "/mem"},
		{Name: "host", MountPath: "/host", ReadOnly: true},
	}
	reader := shellContainer("reader", `cat /scratch/f /mem/f /only-sub/g`)
	reader.VolumeMounts = []corev1.VolumeMount{
		{Name: "scratch", MountPath: "/scratch"},
		{Name: "mem", MountPath: "/mem"},
		{Name: "scratch", MountPath: "/only-sub", SubPath: "sub"},
	}
	// dd touches its whole 64 MiB buffer at once: over the limit on any
	// kernel, fast even under emulation (hack/vmtest.sh).
	hog := shellContainer("hog", `dd if=/dev/zero of=/dev/null bs=64M count=1`)
	hog.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("24Mi")}
	pod := newPod("vols", writer, reader, hog)
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &dirType}}},
	}
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	start(t, r, pod.UID, "writer", 0)
	st := waitFor(t, r, pod.UID, "writer to exit", exited("writer"))
	if c := latest(st, "writer"); c.ExitCode != 0 {
		t.Fatalf("writer: %+v", c)
	}
	// The last line is df's view of the Memory emptyDir: an 8 MiB tmpfs.
	checkLog(t, env, pod.Namespace, pod.Name, pod.UID, "writer", 0,
		"from host\ntmpfs                     8192         4      8188   0% /mem\n")
	// Container root wrote the emptyDir file: on the host it belongs to
	// the first ID of the pod's range.
	base, err := r.ids.Allocate(pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	var fst unix.Stat_t
	if err := unix.Stat(filepath.Join(r.podRoot(pod.UID), "volumes", "scratch", "f"), &fst); err != nil || fst.Uid != base {
		t.Errorf("emptyDir file owner %d (%v), want %d", fst.Uid, err, base)
	}
	start(t, r, pod.UID, "reader", 0)
	waitFor(t, r, pod.UID, "reader to exit", exited("reader"))
	checkLog(t, env, pod.Namespace, pod.Name, pod.UID, "reader", 0, "disk\nmem\nsub\n")

	start(t, r, pod.UID, "hog", 0)
	st = waitFor(t, r, pod.UID, "hog to exit", exited("hog"))
	if c := latest(st, "hog"); c.Reason != "OOMKilled" {
		t.Errorf("hog: %+v, want OOMKilled", c)
	}
	if err := r.RemovePod(ctx, pod.UID, time.Second); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pod.UID, 0)
	if _, err := os.Stat(filepath.Join(hostDir, "hello")); err != nil {
		t.Errorf("RemovePod touched the hostPath volume: %v", err)
	}
}

// The controller starts a pod's containers concurrently: they share the
// pod's /etc/hosts and volumes, which must be prepared once, not raced.
func TestRootConcurrentStartsSharePodFiles(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	var ctrs []corev1.Container
	for i := range 4 {
		name := fmt.Sprintf("c%d", i)
		c := shellContainer(name, "echo x > /mem/"+name+" && sleep 1000")
		c.VolumeMounts = []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}}
		ctrs = append(ctrs, c)
	}
	pod := newPod("conc", ctrs...)
	pod.Spec.Volumes = []corev1.Volume{{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(ctrs))
	var wg sync.WaitGroup
	for i, c := range ctrs {
		wg.Go(func() {
			errs[i] = r.StartContainer(ctx, reconcile.StartRequest{UID: pod.UID, Container: c.Name, PodIPs: []string{"10.99.0.7"}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s: %v", ctrs[i].Name, err)
		}
	}
	dir := filepath.Join(r.podRoot(pod.UID), "volumes", "mem")
	waitFor(t, r, pod.UID, "every container to write its file", func(*reconcile.PodState) bool {
		ents, _ := os.ReadDir(dir)
		return len(ents) == len(ctrs)
	})
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 {
		t.Errorf("%d mounts on the Memory emptyDir, want 1", len(mounts))
	}
	hosts, err := os.ReadFile(filepath.Join(r.podDir(pod.UID), "etc", "hosts"))
	if err != nil || !strings.Contains(string(hosts), "10.99.0.7") {
		t.Errorf("/etc/hosts = %q (%v), want the pod IP in it", hosts, err)
	}
}
