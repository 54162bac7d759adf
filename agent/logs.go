package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/logs"
)

// LogsOptions selects the container log that Client.Logs prints, as the
// flags of `kubectl logs` do. The zero value prints the current log of the
// pod's only container from the agent's log directory.
type LogsOptions struct {
	// LogDir is the agent's --log-dir; empty means the one the agent
	// reports.
	LogDir string
	// Container may be empty when the pod has one container.
	Container string
	// Previous selects the attempt before the current one.
	Previous bool
	logs.ReadOptions
}

// followPoll is how often a follower asks the agent whether the container
// it follows still runs.
const followPoll = time.Second

// Logs prints the log of one container of the agent's pod namespace/name to
// w. The pod's UID and the container's restart count come from the agent;
// the file is read directly from the log directory, as kubelet's own log
// reader does. With Follow, it returns when ctx is done or, once the
// followed attempt has stopped running, after printing its last lines.
func (c *Client) Logs(ctx context.Context, w io.Writer, namespace, name string, opts LogsOptions) error {
	pod, err := c.GetPod(ctx, namespace, name)
	if err != nil {
		return err
	}
	if opts.LogDir == "" {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		opts.LogDir = info.LogDir
	}
	path, cs, err := logFile(opts.LogDir, pod, opts.Container, opts.Previous)
	if err != nil {
		return err
	}
	// Like kubectl, follow only an attempt that may still write.
	if !opts.Follow || opts.Previous || cs.State.Running == nil {
		opts.Follow = false
		return logs.Read(ctx, w, path, opts.ReadOptions)
	}
	return c.follow(ctx, w, pod, cs, path, opts.ReadOptions)
}

// follow reads path until ctx is done or the attempt cs stops running. The
// watcher goroutine is owned here: it ends when readCtx is cancelled, and
// follow waits for it.
func (c *Client) follow(ctx context.Context, w io.Writer, pod *corev1.Pod, cs corev1.ContainerStatus, path string, opts logs.ReadOptions) error {
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopped bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		stopped = c.waitStopped(readCtx, pod, cs)
		if stopped {
			// The shim publishes an exit only after the log writer has
			// drained the container's pipes, so the file is complete;
			// give the reader a few polls to print its last lines.
			select {
			case <-readCtx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	err := logs.Read(readCtx, w, path, opts)
	cancel()
	wg.Wait()
	if stopped && errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return nil
	}
	return err
}

// waitStopped polls the agent until the attempt of cs no longer runs (true)
// or ctx is done (false). A pod that is gone has stopped too.
func (c *Client) waitStopped(ctx context.Context, pod *corev1.Pod, cs corev1.ContainerStatus) bool {
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		now, err := c.GetPod(ctx, pod.Namespace, pod.Name)
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrNotFound) {
			return true
		}
		if err != nil {
			// The agent may be restarting: the log file is still there.
			continue
		}
		if now.UID != pod.UID {
			return true
		}
		cur, ok := containerStatus(now, cs.Name)
		if !ok || cur.State.Running == nil || cur.RestartCount != cs.RestartCount {
			return true
		}
	}
}

// logFile returns the log file of the container named name (or of the only
// container, when name is empty) and its status: the current attempt's
// log, or with previous the one before it. Errors say what to do, as
// kubectl's do.
func logFile(logDir string, pod *corev1.Pod, name string, previous bool) (string, corev1.ContainerStatus, error) {
	key := pod.Namespace + "/" + pod.Name
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if name == "" {
		if len(pod.Spec.Containers) != 1 {
			return "", corev1.ContainerStatus{}, fmt.Errorf("pod %s has %d containers: choose one with -c: %s",
				key, len(names), strings.Join(names, ", "))
		}
		name = names[0]
	}
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if !slices.Contains(names, name) {
		return "", corev1.ContainerStatus{}, fmt.Errorf("container %q is not in pod %s: choose one of %s",
			name, key, strings.Join(names, ", "))
	}
	cs, _ := containerStatus(pod, name)
	attempt := int(cs.RestartCount)
	switch {
	case previous && attempt == 0:
		return "", cs, fmt.Errorf("previous terminated container %q in pod %s not found", name, key)
	case previous:
		attempt--
	case cs.ContainerID == "":
		// No attempt has been created yet, so there is no log file.
		reason := "ContainerCreating"
		if cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
			reason = cs.State.Waiting.Reason
		}
		return "", cs, fmt.Errorf("container %q in pod %s is waiting to start: %s", name, key, reason)
	}
	return logs.Path(logs.PodDir(logDir, pod.Namespace, pod.Name, pod.UID), name, attempt), cs, nil
}

func containerStatus(pod *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs, true
		}
	}
	return corev1.ContainerStatus{}, false
}
