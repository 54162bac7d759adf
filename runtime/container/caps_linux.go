package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultCaps is the capability set of a Kubernetes container without a
// securityContext (containerd's and docker's default). Notably absent:
// CAP_SYS_ADMIN, so the command cannot unmount a mask or remount a
// read-only volume writable, even as root of its user namespace.
var defaultCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
	unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
	unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// dropPrivileges limits the capabilities to defaultCaps and switches to the
// container's user. Order matters: the bounding set and capset need
// CAP_SETPCAP, and setuid needs CAP_SETUID, which root still has; a switch
// to a non-root user then clears the permitted and effective sets, and exec
// gives a root user back exactly the bounding set.
func dropPrivileges(cfg *initConfig) error {
	keep := uint64(0)
	for _, c := range defaultCaps {
		keep |= 1 << c
	}
	if err := dropBounding(keep); err != nil {
		return err
	}
	if err := setCaps(keep); err != nil {
		return err
	}
	return setIdentity(cfg)
}

func dropBounding(keep uint64) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := uintptr(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

func lastCap() (uintptr, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 8)
	if err != nil {
		return 0, fmt.Errorf("parse cap_last_cap: %w", err)
	}
	return uintptr(n), nil
}

// setCaps sets the effective and permitted sets to keep and empties the
// inheritable set, which would otherwise let file capabilities of the
// image regain what the bounding set still allows (CVE-2022-29162).
func setCaps(keep uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// setIdentity applies runAsUser, runAsGroup and the supplementary groups.
// Go's syscall package changes them on every thread of the process.
func setIdentity(cfg *initConfig) error {
	groups := make([]int, len(cfg.AdditionalGIDs))
	for i, g := range cfg.AdditionalGIDs {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return unmapped("supplementary groups", fmt.Sprint(cfg.AdditionalGIDs), err)
	}
	if err := syscall.Setgid(int(cfg.GID)); err != nil {
		return unmapped("group", strconv.FormatUint(uint64(cfg.GID), 10), err)
	}
	if err := syscall.Setuid(int(cfg.UID)); err != nil {
		return unmapped("user", strconv.FormatUint(uint64(cfg.UID), 10), err)
	}
	return nil
}

// unmapped explains EINVAL, which is how the kernel reports an ID outside
// the user namespace's mapping.
func unmapped(what, id string, err error) error {
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("set %s %s: outside the ID range of the pod's user namespace: %w", what, id, err)
	}
	return fmt.Errorf("set %s %s: %w", what, id, err)
}
