package reconcile

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Container lifecycle as kubelet drives it beside the start: probes acted
// on, hooks, and stopping a pod's containers in order.

// target returns where the actions of c's probes and hooks go: the pod's
// first address, or for a hostNetwork pod the host's.
func (w *worker) actionTarget(v *podView, c *corev1.Container) actionTarget {
	host := "127.0.0.1"
	switch {
	case len(v.ips) > 0:
		host = v.ips[0]
	case v.pod.Spec.HostNetwork && w.c.node.IPs != nil:
		if ips := w.c.node.IPs(); len(ips) > 0 {
			host = ips[0]
		}
	}
	return actionTarget{uid: v.pod.UID, container: c, host: host, exec: w.c.exec, http: w.c.http}
}

// applyProbes runs the probes of the pod's running containers and kills
// those whose liveness or startup probe failed; decide then restarts them
// per the restart policy, as after any exit.
func (w *worker) applyProbes(ctx context.Context, v *podView) {
	w.probes.sync(v, w.actionTarget(v, nil).host)
	for _, k := range w.probes.failed(v) {
		c := findContainer(v.pod, k.name)
		grace := gracePeriod(v.pod)
		if p := probeOf(c, k.kind); p.TerminationGracePeriodSeconds != nil {
			grace = max(time.Duration(*p.TerminationGracePeriodSeconds)*time.Second, minGrace)
		}
		w.log.Info("container failed its probe, will be restarted", "container", k.name, "attempt", k.attempt, "probe", k.kind)
		v.container(k.name).probeKilled = &k.attempt
		if err := w.killContainer(ctx, v, c, grace); err != nil {
			w.log.Error("kill container", "container", k.name, "err", err)
			continue
		}
		w.c.requestRelist(w.key)
	}
}

// killContainer stops a running container as kubelet does: its preStop
// hook first, which the grace period bounds and whose time it takes from
// the grace period (down to minGrace), then SIGTERM, and SIGKILL after the
// rest.
func (w *worker) killContainer(ctx context.Context, v *podView, c *corev1.Container, grace time.Duration) error {
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		start := w.c.clock.Now()
		hctx, cancel := context.WithTimeout(ctx, grace)
		err := w.actionTarget(v, c).hook(hctx, c.Lifecycle.PreStop)
		cancel()
		if err != nil {
			w.log.Warn("preStop hook failed", "container", c.Name, "err", err)
		}
		grace = max(grace-w.c.clock.Since(start), minGrace)
	}
	return w.c.rt.StopContainer(ctx, v.pod.UID, c.Name, grace)
}

// postStart runs the container's postStart hook after a start. A hook
// that fails has its container killed, and the start fails as kubelet's
// with PostStartHookError.
func (w *worker) postStart(ctx context.Context, v *podView, c *corev1.Container) error {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return nil
	}
	err := w.actionTarget(v, c).hook(ctx, c.Lifecycle.PostStart)
	if err == nil {
		return nil
	}
	w.log.Warn("postStart hook failed, killing the container", "container", c.Name, "err", err)
	if kerr := w.killContainer(ctx, v, c, gracePeriod(v.pod)); kerr != nil {
		w.log.Error("kill container", "container", c.Name, "err", kerr)
	}
	return &StartError{Reason: "PostStartHookError", Err: fmt.Errorf("postStart hook: %w", err)}
}

// needsOrderedStop reports whether removing the pod needs more than
// RemovePod: preStop hooks to run, or sidecars to stop after the app
// containers.
func needsOrderedStop(pod *corev1.Pod) bool {
	for _, c := range allContainers(pod) {
		if isSidecar(c) || (c.Lifecycle != nil && c.Lifecycle.PreStop != nil) {
			return true
		}
	}
	return false
}

// stopContainers stops the pod's running containers as kubelet does
// before it removes a pod: the app containers together, each after its
// preStop hook, then the sidecars one at a time in reverse order, all
// within one grace period. It returns the grace left for RemovePod.
func (w *worker) stopContainers(ctx context.Context, v *podView, grace time.Duration) time.Duration {
	deadline := w.c.clock.Now().Add(grace)
	left := func() time.Duration { return max(deadline.Sub(w.c.clock.Now()), minGrace) }
	var wg sync.WaitGroup
	for i := range v.pod.Spec.Containers {
		c := &v.pod.Spec.Containers[i]
		if w.running(v, c.Name) {
			wg.Go(func() { w.stopLogged(ctx, v, c, grace) })
		}
	}
	wg.Wait()
	for i := len(v.pod.Spec.InitContainers) - 1; i >= 0; i-- {
		c := &v.pod.Spec.InitContainers[i]
		if w.running(v, c.Name) {
			w.stopLogged(ctx, v, c, left())
		}
	}
	return left()
}

func (w *worker) stopLogged(ctx context.Context, v *podView, c *corev1.Container, grace time.Duration) {
	if err := w.killContainer(ctx, v, c, grace); err != nil {
		// RemovePod stops it again.
		w.log.Warn("stop container", "container", c.Name, "err", err)
	}
}

func (w *worker) running(v *podView, name string) bool {
	cv := v.containers[name]
	return cv != nil && cv.latest != nil && cv.latest.Phase == ContainerRunning
}

// findContainer returns the pod's init or app container called name.
func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, c := range allContainers(pod) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// start makes the container's image present, starts the attempt with it,
// and runs its postStart hook; s.err is how it went. The pull runs on
// pullCtx, which is cancelled when the pod is deleted or edited.
func (w *worker) start(ctx, pullCtx context.Context, v *podView, s *pendingStart) {
	if w.c.images != nil {
		ref, err := w.c.images.EnsureImage(pullCtx, v.pod, &s.c)
		if err != nil {
			s.err, s.pulling, s.cancelled = pullError(err), true, pullCtx.Err() != nil
			return
		}
		s.req.Image = ref
	}
	if s.err = w.c.rt.StartContainer(ctx, s.req); s.err != nil {
		return
	}
	hctx, cancel := w.untilChange(ctx)
	defer cancel()
	s.err = w.postStart(hctx, v, &s.c)
}

// untilChange returns a context that ends with ctx or when the desired pod
// changes. A postStart hook that hangs holds up its pod's sync, as in
// kubelet, but not the removal or replacement of the pod. The goroutine it
// starts ends when the returned context does.
func (w *worker) untilChange(ctx context.Context) (context.Context, context.CancelFunc) {
	w.mu.Lock()
	changed := w.changed
	w.mu.Unlock()
	hctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-changed:
			cancel()
		case <-hctx.Done():
		}
	}()
	return hctx, cancel
}

// restartAfter reports whether the container's latest attempt, which
// exited, is to be started again: per its restart policy, or, when a
// probe killed it, unless the pod never restarts (kubelet restarts a
// container its liveness probe killed whatever it exited with).
func restartAfter(pod *corev1.Pod, name string, cv *containerView) bool {
	policy := restartPolicy(pod, name)
	if k := cv.probeKilled; k != nil && *k == cv.latest.Attempt && policy != corev1.RestartPolicyNever {
		return true
	}
	return restartWanted(policy, cv.latest.ExitCode)
}
