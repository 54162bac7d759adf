package manifests

import (
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// systemDirs are the host directories a hostPath mount of which warns when
// it is writable. A container's root is an unprivileged host user, so it
// can only write there what any user could; that is still a lot: the
// world-writable files and directories (/tmp, /var/tmp, /dev/shm, /run/lock)
// where host services meet.
var systemDirs = sets.New("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var", "/var/lib", "/var/run")

// kernelDirs count with everything under them: they are the kernel's
// interfaces (/proc/1/root, /sys/fs/cgroup, /dev/shm).
var kernelDirs = []string{"/proc", "/sys", "/dev"}

// exposure is what a hostPath mount hands container root beyond the files
// its permissions show: read-only does not take these away.
type exposure struct {
	dir  string
	what string
}

// exposures apply to a mount of dir itself, or of any ancestor of it.
// Sockets and devices answer through a read-only mount: connecting to a
// socket or opening a device for writing is not writing to the filesystem.
var exposures = []exposure{
	{"/proc", "see the host's processes and their command lines"},
	{"/run", "connect to the host's world-writable sockets"},
	{"/var/run", "connect to the host's world-writable sockets"},
	{"/dev", "open the host's world-writable devices"},
}

// warnHostPaths warns about the mounts of hostPath volumes that reach into
// the host's system directories: writable mounts of them, and mounts of
// any kind of the places that expose processes, sockets or devices. The
// path is judged as written, with the mount's subPath: validation runs
// where the host's symlinks cannot be seen (peapod validate), so this is a
// warning for the careless case, not a guarantee.
func warnHostPaths(f *findings, spec *corev1.PodSpec, p *field.Path) {
	hostPaths := make(map[string]string) // volume name → host path
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	hostUsers := spec.HostUsers != nil && *spec.HostUsers
	for _, list := range []struct {
		name       string
		containers []corev1.Container
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}} {
		for i, c := range list.containers {
			for j, m := range c.VolumeMounts {
				dir, ok := hostPaths[m.Name]
				if !ok {
					continue
				}
				if msg := hostPathRisk(path.Join(dir, m.SubPath), m.ReadOnly, hostUsers); msg != "" {
					f.caution(p.Child(list.name).Index(i).Child("volumeMounts").Index(j), msg)
				}
			}
		}
	}
}

// hostPathRisk returns what container root can do on the host through a
// mount of dir, or "" when dir is not a system directory.
func hostPathRisk(dir string, readOnly, hostUsers bool) string {
	if !isSystemDir(dir) {
		return ""
	}
	mode := "writable"
	if readOnly {
		mode = "read-only"
	}
	if hostUsers {
		// Host root with the default capabilities, CAP_DAC_OVERRIDE among
		// them: nothing but a read-only mount stops it.
		can := "change anything there"
		if readOnly {
			can = "read every file there, secrets included"
		}
		return fmt.Sprintf("mounts host directory %s %s into a container in the host's user namespace (hostUsers: true), where root is host root: it can %s",
			dir, mode, can)
	}
	var can []string
	if !readOnly {
		can = append(can, "write the host's world-writable files and directories")
	}
	for _, e := range exposures {
		if (within(e.dir, dir) || within(dir, e.dir)) && !slices.Contains(can, e.what) {
			can = append(can, e.what)
		}
	}
	if readOnly && len(can) == 0 {
		return ""
	}
	can = append(can, "and read every world-readable file")
	fix := "mount a narrower directory"
	if !readOnly {
		fix += " or set readOnly: true"
	}
	return fmt.Sprintf("mounts host directory %s %s: container root is an unprivileged host user, yet through it can %s; %s",
		dir, mode, strings.Join(can, ", "), fix)
}

// isSystemDir reports whether dir is one of systemDirs, or inside one of
// kernelDirs.
func isSystemDir(dir string) bool {
	if systemDirs.Has(dir) {
		return true
	}
	for _, k := range kernelDirs {
		if within(dir, k) {
			return true
		}
	}
	return false
}

// within reports whether dir is root or inside it; both must be clean.
func within(dir, root string) bool {
	return dir == root || root == "/" || strings.HasPrefix(dir, root+"/")
}

// caution records a warning about a setting peapod honours but that
// weakens isolation.
func (f *findings) caution(path *field.Path, msg string) {
	f.warnings = append(f.warnings, fmt.Sprintf("%s: %s", pathString(path), msg))
}
