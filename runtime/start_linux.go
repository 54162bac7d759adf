package runtime

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/logs"
	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/shim"
	"github.com/peapod/peapod/runtime/userns"
)

// StartContainer implements reconcile.Runtime.
func (r *Runtime) StartContainer(ctx context.Context, req reconcile.StartRequest) error {
	defer r.states.bump(req.UID)
	dir := r.podDir(req.UID)
	pod, _, err := r.pods.read(dir)
	if err != nil {
		return fmt.Errorf("start container %s of pod %s: no sandbox: %w", req.Container, req.UID, err)
	}
	c := findContainer(pod, req.Container)
	if c == nil {
		return fmt.Errorf("start container: pod %s/%s has no container %q", pod.Namespace, pod.Name, req.Container)
	}
	spec, err := r.prepareStart(ctx, dir, pod, c, req)
	if err != nil {
		return err
	}
	r.pruneAttempts(pod, c.Name, req.Attempt)
	body, err := json.Marshal(r.shimSpec(pod, c, spec))
	if err != nil {
		return fmt.Errorf("encode container spec: %w", err)
	}
	podLogs := logs.PodDir(r.opts.LogDir, pod.Namespace, pod.Name, pod.UID)
	client := shim.NewClient(dir)
	defer client.Close()
	_, err = client.Start(ctx, &shim.StartRequest{
		Name: c.Name, Attempt: req.Attempt, Spec: body,
		LogPath:    logs.Path(podLogs, c.Name, req.Attempt),
		LogMaxSize: r.opts.LogMaxSize, LogMaxFiles: r.opts.LogMaxFiles,
	})
	var remote *shim.RemoteError
	if errors.As(err, &remote) {
		// The shim ran the start and it failed: a bad command, user or
		// mount reported by the init stage, or a failing cgroup.
		return &reconcile.StartError{Reason: "RunContainerError", Err: err}
	}
	if err != nil {
		return fmt.Errorf("start container %s of pod %s/%s: %w", c.Name, pod.Namespace, pod.Name, err)
	}
	r.log.Debug("container started", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "attempt", req.Attempt)
	return nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, c := range podContainers(pod) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// prepareStart records the pod IPs and builds the container's spec, which
// prepares its volumes. Both touch files the pod's containers share, so
// starts of one pod's containers, which run concurrently, take turns here;
// the slow part, the start in the shim, runs in parallel.
func (r *Runtime) prepareStart(ctx context.Context, dir string, pod *corev1.Pod, c *corev1.Container, req reconcile.StartRequest) (*container.Spec, error) {
	defer r.podLocks.lock(pod.UID)()
	if err := r.recordIPs(dir, pod, req.PodIPs); err != nil {
		return nil, err
	}
	return r.containerSpec(ctx, pod, c, req)
}

// recordIPs keeps the pod IPs for ListPods and writes them to /etc/hosts,
// unless they are recorded already: /etc/hosts is rewritten in place, and
// the pod's running containers may be reading it.
func (r *Runtime) recordIPs(dir string, pod *corev1.Pod, ips []string) error {
	b, err := json.Marshal(ips)
	if err != nil {
		return fmt.Errorf("encode pod IPs: %w", err)
	}
	if old, err := os.ReadFile(filepath.Join(dir, ipsFile)); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := shim.WriteFileAtomic(filepath.Join(dir, ipsFile), b, 0o600); err != nil {
		return err
	}
	if pod.Spec.HostNetwork {
		// Its /etc/hosts is the host's copy, made with the sandbox.
		return nil
	}
	hostname, err := podHostnameFor(pod)
	if err != nil {
		return err
	}
	return sandbox.WriteHosts(dir, hostname, ips)
}

// containerSpec resolves the image and volumes and builds the spec.
func (r *Runtime) containerSpec(ctx context.Context, pod *corev1.Pod, c *corev1.Container, req reconcile.StartRequest) (*container.Spec, error) {
	img, err := r.opts.Images.Image(ctx, cmp.Or(req.Image, c.Image))
	if err != nil {
		return nil, err
	}
	user, err := resolveUser(img.Layers, img.Config.User, pod, c)
	if err != nil {
		return nil, err
	}
	ref := cmp.Or(req.Image, c.Image)
	if err := recordImage(shim.AttemptDir(r.podDir(pod.UID), c.Name, req.Attempt), imageRecord{StatusID: imageID(img, ref), ID: img.ID}); err != nil {
		return nil, err
	}
	if img.ID != "" {
		if err := r.opts.Images.MarkUsed(img.ID); err != nil {
			r.log.Warn("mark image used", "image", img.ID, "err", err)
		}
	}
	in := &specInput{
		pod: pod, c: c, req: req, image: img, user: user,
		dir:     r.attemptRoot(pod, c.Name, req.Attempt),
		sandbox: sandbox.Layout(r.podDir(pod.UID), pod.Spec.HostNetwork),
	}
	owner := volumeOwner{uid: -1, gid: -1}
	if usesUserNS(pod) {
		base, err := r.ids.Allocate(pod.UID)
		if err != nil {
			return nil, err
		}
		in.userNS = &container.IDMap{HostID: base, Size: userns.RangeSize}
		owner = volumeOwner{uid: int(base), gid: int(base)}
	}
	if in.volumes, err = prepareVolumes(pod, c, r.podRoot(pod.UID), owner); err != nil {
		return nil, err
	}
	spec, err := buildSpec(in)
	if err != nil {
		return nil, err
	}
	if spec.Seccomp, err = r.confine(pod, c); err != nil {
		return nil, err
	}
	if err := r.mountTerminationLog(spec, pod, c, req.Attempt); err != nil {
		return nil, err
	}
	return spec, nil
}

// shimSpec wraps a spec for the shim's launcher.
func (r *Runtime) shimSpec(pod *corev1.Pod, c *corev1.Container, spec *container.Spec) *shim.ContainerSpec {
	cs := &shim.ContainerSpec{Name: c.Name, Container: *spec}
	if o := r.opts.Cgroups; o != nil {
		cs.Cgroups = &shim.CgroupConfig{Root: o.Root, Parent: o.Parent, PodUID: pod.UID, Resources: c.Resources}
	}
	return cs
}

// attemptRoot is the attempt's directory on disk: the overlay's upper and
// work directories, a fresh writable layer per attempt as with kubelet.
func (r *Runtime) attemptRoot(pod *corev1.Pod, name string, attempt int) string {
	return filepath.Join(r.podRoot(pod.UID), "containers", name, strconv.Itoa(attempt))
}

// pruneAttempts removes what older attempts of a container left: the
// writable layers of those that exited, and the records of all but the
// previous attempt. Failures cost space only, so they are logged.
func (r *Runtime) pruneAttempts(pod *corev1.Pod, name string, attempt int) {
	log := r.log.With("uid", pod.UID, "container", name)
	for _, a := range attempts(filepath.Join(r.podRoot(pod.UID), "containers", name), -1) {
		if a >= attempt || mayRun(shim.AttemptDir(r.podDir(pod.UID), name, a)) {
			continue
		}
		dir := r.attemptRoot(pod, name, a)
		if err := container.Cleanup(&container.Spec{ID: containerID(pod.UID, name, a), Dir: dir}); err != nil {
			log.Warn("remove old writable layer", "err", err)
		} else if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("remove old writable layer", "err", err)
		}
	}
	for _, a := range attempts(filepath.Join(shim.ContainersDir(r.podDir(pod.UID)), name), -1) {
		if a >= attempt-1 {
			continue
		}
		if err := os.RemoveAll(shim.AttemptDir(r.podDir(pod.UID), name, a)); err != nil {
			log.Warn("remove old attempt records", "err", err)
		}
	}
	r.pruneTerminationLogs(pod, name, attempt)
}

// mayRun reports whether an attempt started and has no exit record: its
// writable layer may be in use.
func mayRun(attemptDir string) bool {
	if _, err := shim.ReadState(attemptDir); err != nil {
		return false
	}
	_, err := shim.ReadExit(attemptDir)
	return err != nil
}
