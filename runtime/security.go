package runtime

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
)

// applySecurityContext sets the parts of spec that the container's
// securityContext decides beyond its user: capabilities, a read-only
// rootfs, and runAsNonRoot, checked as kubelet checks it against the
// runAsUser, else the image's User (imageUser; a rootfs image has none and
// runs as root).
func applySecurityContext(spec *container.Spec, pod *corev1.Pod, c *corev1.Container, imageUser string) error {
	uid, name := imageUID(imageUser)
	if err := verifyRunAsNonRoot(pod, c, uid, name); err != nil {
		return err
	}
	sc := c.SecurityContext
	if sc == nil {
		return nil
	}
	if caps := sc.Capabilities; caps != nil {
		spec.CapAdd = capabilityNames(caps.Add)
		spec.CapDrop = capabilityNames(caps.Drop)
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		spec.ReadOnlyRootfs = true
		readOnlySandboxFiles(spec.Mounts)
	}
	return nil
}

// imageUID reads an image's User as kubelet's runtime reports it: the
// numeric user of "uid" or "uid:group" (root when empty), else the name,
// which kubelet cannot verify.
func imageUID(user string) (*int64, string) {
	name, _, _ := strings.Cut(user, ":")
	if name == "" {
		root := int64(0)
		return &root, ""
	}
	if uid, err := strconv.ParseInt(name, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, name
}

func capabilityNames(caps []corev1.Capability) []string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = string(c)
	}
	return names
}

// readOnlySandboxFiles makes /etc/hostname and /etc/resolv.conf read-only
// for a read-only rootfs, as containerd does; /etc/hosts stays writable, as
// kubelet mounts it, and so do /dev/shm and /dev/mqueue.
func readOnlySandboxFiles(mounts []container.Mount) {
	for i := range mounts {
		switch mounts[i].Destination {
		case "/etc/hostname", "/etc/resolv.conf":
			mounts[i].ReadOnly = true
		}
	}
}

// verifyRunAsNonRoot is kubelet's check of runAsNonRoot (the container's
// setting over the pod's) against the user the container runs as: its
// runAsUser, else the image's user, given as imageUID when numeric or as
// imageUser when it is a name. It fails with kubelet's messages and reason.
func verifyRunAsNonRoot(pod *corev1.Pod, c *corev1.Container, imageUID *int64, imageUser string) error {
	nonRoot, uid := effectiveNonRoot(pod, c)
	if !nonRoot {
		return nil
	}
	podDesc := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
	var err error
	switch {
	case uid != nil && *uid == 0:
		err = fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podDesc, c.Name)
	case uid != nil:
		return nil
	case imageUID != nil && *imageUID == 0:
		err = fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podDesc, c.Name)
	case imageUID == nil && imageUser != "":
		err = fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)",
			imageUser, podDesc, c.Name)
	default:
		return nil
	}
	return &reconcile.StartError{Reason: "CreateContainerConfigError", Err: err}
}

// effectiveNonRoot returns runAsNonRoot and runAsUser, the container's
// settings over the pod's.
func effectiveNonRoot(pod *corev1.Pod, c *corev1.Container) (nonRoot bool, uid *int64) {
	if sc := pod.Spec.SecurityContext; sc != nil {
		nonRoot = sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
		uid = sc.RunAsUser
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
	}
	return nonRoot, uid
}
