package runtime

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/logs"
)

// TestDiskUsage lays out a pod's trees as the runtime does and checks what
// each counts towards: disk emptyDirs by volume, writable layers and logs
// by container; Memory emptyDirs and the files of other pods not at all.
func TestDiskUsage(t *testing.T) {
	base := t.TempDir()
	r := &Runtime{opts: Options{RootDir: filepath.Join(base, "root"), LogDir: filepath.Join(base, "log")}, log: slog.New(slog.DiscardHandler)}
	pod := newPod("du", corev1.Container{Name: "app"}, corev1.Container{Name: "idle"})
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: base}}},
	}
	const mib = 1 << 20
	root, podLogs := r.podRoot(pod.UID), logs.PodDir(r.opts.LogDir, pod.Namespace, pod.Name, pod.UID)
	for path, size := range map[string]int{
		filepath.Join(root, "volumes", "data", "blob"):                     3 * mib,
		filepath.Join(root, "volumes", "mem", "blob"):                      5 * mib,
		filepath.Join(root, "containers", "app", "0", "upper", "tmp", "f"): 2 * mib,
		logs.Path(podLogs, "app", 0):                                       mib,
		filepath.Join(r.podRoot("other"), "volumes", "data", "blob"):       7 * mib,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, bytes.Repeat([]byte{1}, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := r.DiskUsage(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	const slack = 64 << 10
	for what, c := range map[string]struct {
		got, want int64
	}{
		"volume data":    {u.Volumes["data"], 3 * mib},
		"container app":  {u.Containers["app"], 3 * mib},
		"container idle": {u.Containers["idle"], 0},
	} {
		if c.got < c.want || c.got > c.want+slack {
			t.Errorf("%s: %d bytes, want %d plus at most %d", what, c.got, c.want, slack)
		}
	}
	if _, ok := u.Volumes["mem"]; ok || len(u.Volumes) != 1 {
		t.Errorf("volumes measured: %v, want data only", u.Volumes)
	}
}
