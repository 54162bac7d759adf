package agent

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime"
)

// defaultContainerAnnotation names the container kubectl exec and logs
// pick when none is given.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// Exec runs a process in a container of the pod namespace/name, as
// `kubectl exec` does, and returns its exit code. The agent only names
// the pod's UID; the process is run by the pod's shim. An empty container
// picks the pod's default container, as ExecContainer does, and says so
// on opts.Stderr.
func (c *Client) Exec(ctx context.Context, namespace, name, container string, opts runtime.ExecOptions) (int, error) {
	pod, err := c.GetPod(ctx, namespace, name)
	if err != nil {
		return -1, err
	}
	container, note, err := ExecContainer(pod, container)
	if err != nil {
		return -1, err
	}
	if note != "" && opts.Stderr != nil {
		fmt.Fprintln(opts.Stderr, note)
	}
	return runtime.Exec(ctx, c.StateDir, pod.UID, container, opts)
}

// ExecContainer checks the container name for an exec into pod, or picks
// one when name is empty, as kubectl does: the container the
// kubectl.kubernetes.io/default-container annotation names, else the
// first. note, when set, tells the user which one was picked.
func ExecContainer(pod *corev1.Pod, name string) (container, note string, err error) {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if len(names) == 0 {
		return "", "", fmt.Errorf("pod %s/%s has no containers", pod.Namespace, pod.Name)
	}
	if name == "" {
		name = names[0]
		if d := pod.Annotations[defaultContainerAnnotation]; d != "" {
			name = d
		} else if len(names) > 1 {
			note = fmt.Sprintf("Defaulted container %q out of: %s", name, strings.Join(names, ", "))
		}
	}
	for _, n := range names {
		if n == name {
			return name, note, nil
		}
	}
	return "", "", fmt.Errorf("container %q is not in pod %s/%s: choose one of %s", name, pod.Namespace, pod.Name, strings.Join(names, ", "))
}
