package manifests

import (
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// appArmorAnnotation prefixes the deprecated per-container AppArmor
// annotation, which the runtime reads when the fields are unset.
const appArmorAnnotation = "container.apparmor.security.beta.kubernetes.io/"

// appArmorNotApplied is why an AppArmor profile other than Unconfined
// does not confine a container.
const appArmorNotApplied = "peapod does not apply AppArmor profiles: the container runs without one"

// validateSeccomp checks a seccompProfile: a known type, and for
// Localhost a path that stays inside the agent's profile directory
// (--root/seccomp), which the runtime enforces again when it opens it.
func validateSeccomp(f *findings, p *corev1.SeccompProfile, fp *field.Path) {
	if p == nil {
		return
	}
	switch p.Type {
	case corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined:
		if p.LocalhostProfile != nil {
			f.fail(fp.Child("localhostProfile"), "must be set only with type: Localhost")
		}
	case corev1.SeccompProfileTypeLocalhost:
		validateLocalhostProfile(f, p.LocalhostProfile, fp.Child("localhostProfile"))
	default:
		f.fail(fp.Child("type"), "must be RuntimeDefault, Unconfined or Localhost, not %q", p.Type)
	}
}

func validateLocalhostProfile(f *findings, name *string, fp *field.Path) {
	switch {
	case name == nil || *name == "":
		f.fail(fp, "required with type: Localhost")
	case path.IsAbs(*name):
		f.fail(fp, "must be a path relative to the agent's seccomp profile directory, not %q", *name)
	default:
		validateNoBacksteps(f, fp, *name)
	}
}

// validateAppArmor checks an appArmorProfile. peapod applies none:
// RuntimeDefault warns, Localhost warns that the container will not start
// (the runtime refuses it, as the profile was written for the workload).
func validateAppArmor(f *findings, p *corev1.AppArmorProfile, fp *field.Path) {
	if p == nil {
		return
	}
	switch p.Type {
	case corev1.AppArmorProfileTypeUnconfined:
	case corev1.AppArmorProfileTypeRuntimeDefault:
		f.warn(fp.Child("type"), appArmorNotApplied)
	case corev1.AppArmorProfileTypeLocalhost:
		if p.LocalhostProfile == nil || *p.LocalhostProfile == "" {
			f.fail(fp.Child("localhostProfile"), "required with type: Localhost")
			return
		}
		f.warn(fp.Child("type"), "peapod does not apply AppArmor profiles: the container will not start (CreateContainerConfigError)")
		return
	default:
		f.fail(fp.Child("type"), "must be RuntimeDefault, Unconfined or Localhost, not %q", p.Type)
		return
	}
	if p.LocalhostProfile != nil {
		f.fail(fp.Child("localhostProfile"), "must be set only with type: Localhost")
	}
}

// validateAppArmorAnnotations checks the deprecated AppArmor annotations
// as validateAppArmor checks the fields.
func validateAppArmorAnnotations(f *findings, annotations map[string]string, fp *field.Path) {
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, appArmorAnnotation) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := annotations[k]; {
		case v == "unconfined":
		case v == "runtime/default":
			f.warn(fp.Key(k), appArmorNotApplied)
		case strings.HasPrefix(v, "localhost/") && len(v) > len("localhost/"):
			f.warn(fp.Key(k), "peapod does not apply AppArmor profiles: the container will not start (CreateContainerConfigError)")
		default:
			f.fail(fp.Key(k), "must be runtime/default, unconfined or localhost/<profile>, not %q", v)
		}
	}
}
