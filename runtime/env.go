package runtime

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
)

// defaultPath is the PATH a container gets unless its env sets one; an
// image's config would provide it, and a rootfs directory has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envList is an ordered environment: names in first-definition order, the
// last definition winning, as kubelet merges duplicates.
type envList struct {
	names  []string
	values map[string]string
}

func (e *envList) set(name, value string) {
	if e.values == nil {
		e.values = map[string]string{}
	}
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *envList) lookup(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

// environ returns NAME=value pairs.
func (e *envList) environ() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// resolveEnv computes a container's environment as kubelet does: each
// value may refer to variables defined before it; valueFrom is resolved
// from the pod. Defaults for PATH and HOSTNAME come first so the pod can
// override them.
func resolveEnv(pod *corev1.Pod, c *corev1.Container, podIPs []string, x *expansion) (*envList, error) {
	env := &envList{}
	x.lookup = env.lookup
	env.set("PATH", defaultPath)
	env.set("HOSTNAME", podHostname(pod))
	if len(c.EnvFrom) > 0 {
		return nil, configError(c, "envFrom is not supported: peapod has no ConfigMaps or Secrets")
	}
	for _, ev := range c.Env {
		if ev.ValueFrom == nil {
			env.set(ev.Name, x.expand("env "+ev.Name, ev.Value))
			if x.err != nil {
				return nil, configError(c, x.err.Error())
			}
			continue
		}
		v, err := valueFrom(pod, ev.ValueFrom, podIPs)
		if err != nil {
			return nil, configError(c, fmt.Sprintf("env %s: %v", ev.Name, err))
		}
		env.set(ev.Name, v)
	}
	return env, nil
}

// valueFrom resolves the sources kubelet resolves from the pod object alone.
func valueFrom(pod *corev1.Pod, src *corev1.EnvVarSource, podIPs []string) (string, error) {
	if src.FieldRef == nil {
		return "", fmt.Errorf("only valueFrom.fieldRef is supported: peapod has no ConfigMaps, Secrets or resource fields")
	}
	path := src.FieldRef.FieldPath
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		if len(podIPs) == 0 {
			return "", nil
		}
		return podIPs[0], nil
	case "status.podIPs":
		return strings.Join(podIPs, ","), nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

// podHostname is the pod's hostname as kubelet derives it (without the
// subdomain, which needs cluster DNS).
func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	name := pod.Name
	// A hostname is at most 63 characters; kubelet truncates longer names.
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-.")
	}
	return name
}

func configError(c *corev1.Container, msg string) error {
	return &reconcile.StartError{Reason: "CreateContainerConfigError", Err: fmt.Errorf("container %s: %s", c.Name, msg)}
}
