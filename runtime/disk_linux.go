package runtime

import (
	"context"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/diskusage"
	"github.com/peapod/peapod/runtime/logs"
)

var _ reconcile.DiskMeter = (*Runtime)(nil)

// DiskUsage implements reconcile.DiskMeter. It walks the pod's trees on
// disk as du does (allocated blocks, hard links once, no symlink
// followed): each disk-backed emptyDir under --root, and for each
// container the writable layers of its attempts under --root and its log
// files under --log-dir. One Walker bounds the whole pass
// (diskusage.DefaultMaxEntries entries); a pass cut short is logged and
// its usage, a lower bound, still reported.
func (r *Runtime) DiskUsage(ctx context.Context, pod *corev1.Pod) (reconcile.DiskUsage, error) {
	root := r.podRoot(pod.UID)
	podLogs := logs.PodDir(r.opts.LogDir, pod.Namespace, pod.Name, pod.UID)
	w := &diskusage.Walker{}
	u := reconcile.DiskUsage{Volumes: map[string]int64{}, Containers: map[string]int64{}}
	var truncated bool
	measure := func(dir string) (int64, error) {
		got, err := w.Walk(ctx, dir)
		truncated = truncated || got.Truncated
		return got.Bytes, err
	}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.Medium == corev1.StorageMediumMemory {
			continue
		}
		n, err := measure(filepath.Join(root, "volumes", v.Name))
		if err != nil {
			return u, err
		}
		u.Volumes[v.Name] = n
	}
	for _, c := range podContainers(pod) {
		layers, err := measure(filepath.Join(root, "containers", c.Name))
		if err != nil {
			return u, err
		}
		logBytes, err := measure(filepath.Join(podLogs, c.Name))
		if err != nil {
			return u, err
		}
		u.Containers[c.Name] = layers + logBytes
	}
	if truncated {
		r.log.Warn("local storage measured in part: the pod has more files than one pass examines",
			"pod", pod.Namespace+"/"+pod.Name, "uid", pod.UID, "entries", diskusage.DefaultMaxEntries)
	}
	return u, nil
}
