package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Sysctl is one kernel setting of the pod's network or IPC namespace.
type Sysctl struct {
	// Path is relative to /proc/sys: "net/ipv4/ip_local_port_range".
	Path string
	// Value is written as is.
	Value string
}

// writeSysctls writes the pod's sysctls from a thread that has entered
// its network and IPC namespaces: the kernel resolves /proc/sys/net and
// the IPC settings against the namespaces of the thread that opens the
// file. A network sysctl of a hostNetwork pod would change the host's,
// and is refused.
func writeSysctls(sysctls []Sysctl, hostNetwork bool) error {
	for _, s := range sysctls {
		if err := checkSysctlPath(s.Path, hostNetwork); err != nil {
			return err
		}
		if err := writeSysctl(s); err != nil {
			return err
		}
	}
	return nil
}

// checkSysctlPath accepts only paths in the pod's namespaces, whatever the
// caller validated: the network (unless it is the host's) and IPC ones.
func checkSysctlPath(p string, hostNetwork bool) error {
	if path.Clean(p) != p || path.IsAbs(p) || strings.HasPrefix(p, "..") {
		return fmt.Errorf("sysctl %s: not a clean path under /proc/sys", p)
	}
	switch {
	case strings.HasPrefix(p, "net/"):
		if hostNetwork {
			return fmt.Errorf("sysctl %s: would change the host's network namespace", p)
		}
	case p == "kernel/sem", strings.HasPrefix(p, "kernel/shm"), strings.HasPrefix(p, "kernel/msg"), strings.HasPrefix(p, "fs/mqueue/"):
	default:
		return fmt.Errorf("sysctl %s: not a setting of the pod's network or IPC namespace", p)
	}
	return nil
}

func writeSysctl(s Sysctl) error {
	// O_NOFOLLOW: /proc/sys has no symlinks, and must not grow one.
	f, err := os.OpenFile("/proc/sys/"+s.Path, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s: the kernel has no such setting", s.Path)
	}
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", s.Path, err)
	}
	_, err = f.WriteString(s.Value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set sysctl %s to %q: %w", s.Path, s.Value, err)
	}
	return nil
}
