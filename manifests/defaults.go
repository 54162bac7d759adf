package manifests

import corev1 "k8s.io/api/core/v1"

// defaultGracePeriod is the API server's default for
// terminationGracePeriodSeconds.
const defaultGracePeriod int64 = 30

// setDefaults fills the fields the API server would default and peapod
// reads. It leaves imagePullPolicy unset: the pod's UID is a hash of the
// defaulted manifest, so a new default would change every pod's UID (and
// restart it on upgrade); the runtime defaults it where it is used.
func setDefaults(pod *corev1.Pod) {
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	spec := &pod.Spec
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.TerminationGracePeriodSeconds == nil {
		grace := defaultGracePeriod
		spec.TerminationGracePeriodSeconds = &grace
	}
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	for i := range spec.Volumes {
		// As in Kubernetes, a volume that names no source is an emptyDir.
		if v := &spec.Volumes[i]; v.VolumeSource == (corev1.VolumeSource{}) {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
	for i := range spec.Containers {
		setContainerDefaults(&spec.Containers[i])
	}
	for i := range spec.InitContainers {
		setContainerDefaults(&spec.InitContainers[i])
	}
}

func setContainerDefaults(c *corev1.Container) {
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for _, env := range c.Env {
		if ref := fieldRefOf(env); ref != nil && ref.APIVersion == "" {
			ref.APIVersion = "v1"
		}
	}
}

// fieldRefOf returns the env var's fieldRef, or nil.
func fieldRefOf(env corev1.EnvVar) *corev1.ObjectFieldSelector {
	if env.ValueFrom == nil {
		return nil
	}
	return env.ValueFrom.FieldRef
}
