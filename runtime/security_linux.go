package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/seccomp"
)

// seccompDir holds Localhost seccomp profiles, under --root, as kubelet's
// <root-dir>/seccomp.
const seccompDir = "seccomp"

// maxProfileSize bounds a Localhost profile; docker's default is 20 KiB.
const maxProfileSize = 1 << 20

// confine returns container c's seccomp filter (nil: Unconfined) and
// refuses an AppArmor profile that it cannot apply.
func (r *Runtime) confine(pod *corev1.Pod, c *corev1.Container) (*seccomp.Program, error) {
	if err := r.checkAppArmor(pod, c); err != nil {
		return nil, err
	}
	return r.seccompProgram(pod, c)
}

// seccompProgram compiles (once per profile and capability set) the
// profile the container's securityContext names, else the pod's, else
// RuntimeDefault, or nothing with NoSeccompDefault. A Localhost profile
// that cannot be read or compiled is the user's to fix.
func (r *Runtime) seccompProgram(pod *corev1.Pod, c *corev1.Container) (*seccomp.Program, error) {
	// Compiled for the container's own capabilities: the profile's
	// capability-conditioned rules (mount, unshare, ptrace...) follow them.
	var add, drop []string
	if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil {
		add, drop = capabilityNames(sc.Capabilities.Add), capabilityNames(sc.Capabilities.Drop)
	}
	caps, err := container.Capabilities(add, drop)
	if err != nil {
		return nil, configError(c, err.Error())
	}
	profile := seccompProfile(pod, c)
	switch {
	case profile == nil && r.opts.NoSeccompDefault, profile != nil && profile.Type == corev1.SeccompProfileTypeUnconfined:
		return nil, nil
	case profile == nil || profile.Type == corev1.SeccompProfileTypeRuntimeDefault:
		p, err := r.seccomp.RuntimeDefault(caps)
		if err != nil {
			return nil, fmt.Errorf("compile the RuntimeDefault seccomp profile: %w", err)
		}
		return p, nil
	case profile.Type == corev1.SeccompProfileTypeLocalhost && profile.LocalhostProfile != nil:
		dir := filepath.Join(r.opts.RootDir, seccompDir)
		data, err := readBeneath(dir, *profile.LocalhostProfile)
		if err != nil {
			return nil, configError(c, fmt.Sprintf("seccomp profile %s in %s: %v", *profile.LocalhostProfile, dir, err))
		}
		p, err := r.seccomp.Localhost(data, caps)
		if err != nil {
			return nil, configError(c, fmt.Sprintf("seccomp profile %s: %v", filepath.Join(dir, *profile.LocalhostProfile), err))
		}
		return p, nil
	}
	return nil, configError(c, fmt.Sprintf("seccomp profile type %q without a localhostProfile, or unknown", profile.Type))
}

func seccompProfile(pod *corev1.Pod, c *corev1.Container) *corev1.SeccompProfile {
	if sc := c.SecurityContext; sc != nil && sc.SeccompProfile != nil {
		return sc.SeccompProfile
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.SeccompProfile
	}
	return nil
}

// readBeneath reads the regular file name inside dir. The lookup cannot
// leave dir, through "..", an absolute path or a symlink (RESOLVE_BENEATH):
// manifests name profiles, and must not make the agent read other files.
func readBeneath(dir, name string) ([]byte, error) {
	d, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	// O_NONBLOCK: a FIFO put there must not hang the start.
	fd, err := unix.Openat2(int(d.Fd()), name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.EXDEV) {
		return nil, errors.New("the path leaves the directory (through .., an absolute path or a symlink)")
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, name))
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxProfileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxProfileSize)
	}
	return data, nil
}

// appArmorAnnotation is the deprecated per-container form of
// appArmorProfile, read as kubelet does when the fields are unset.
const appArmorAnnotation = "container.apparmor.security.beta.kubernetes.io/"

// checkAppArmor handles the AppArmor profile the container asks for.
// peapod loads and applies no AppArmor profile, on any host: Unconfined is
// what runs; RuntimeDefault runs unconfined with a warning (much of what
// docker's profile denies, mounts and writes to /proc and /sys, peapod
// denies by other means); Localhost, a profile written for the workload,
// is refused rather than dropped.
func (r *Runtime) checkAppArmor(pod *corev1.Pod, c *corev1.Container) error {
	typ, name := appArmorProfile(pod, c)
	switch typ {
	case corev1.AppArmorProfileTypeRuntimeDefault:
		r.log.Warn("AppArmor profile not applied: peapod does not apply AppArmor profiles",
			"pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "profile", typ)
	case corev1.AppArmorProfileTypeLocalhost:
		return configError(c, fmt.Sprintf("AppArmor profile localhost/%s cannot be applied: peapod does not apply AppArmor profiles; "+
			"set appArmorProfile.type to Unconfined or RuntimeDefault to run without it", name))
	}
	return nil
}

// appArmorProfile returns the container's AppArmor profile type, and the
// profile's name for Localhost: its own field, else the pod's, else the
// deprecated annotation; "" when none is set.
func appArmorProfile(pod *corev1.Pod, c *corev1.Container) (corev1.AppArmorProfileType, string) {
	var p *corev1.AppArmorProfile
	if sc := pod.Spec.SecurityContext; sc != nil {
		p = sc.AppArmorProfile
	}
	if sc := c.SecurityContext; sc != nil && sc.AppArmorProfile != nil {
		p = sc.AppArmorProfile
	}
	if p != nil {
		name := ""
		if p.LocalhostProfile != nil {
			name = *p.LocalhostProfile
		}
		return p.Type, name
	}
	switch v := pod.Annotations[appArmorAnnotation+c.Name]; {
	case v == "runtime/default":
		return corev1.AppArmorProfileTypeRuntimeDefault, ""
	case v == "unconfined":
		return corev1.AppArmorProfileTypeUnconfined, ""
	case strings.HasPrefix(v, "localhost/"):
		return corev1.AppArmorProfileTypeLocalhost, strings.TrimPrefix(v, "localhost/")
	}
	return "", ""
}
