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

// dropPrivileges limits the capabilities to cfg.Caps and switches to the
// container's user, in runc's order:
//   - the bounding set first, which needs CAP_SETPCAP, still held;
//   - the user next, which needs CAP_SETUID and CAP_SETGID, still held
//     even when cfg.Caps drops them; PR_SET_KEEPCAPS keeps the permitted
//     set through a switch to a non-root user, which would otherwise clear
//     it;
//   - capset last, to exactly cfg.Caps (permitted, and effective for root)
//     and an empty inheritable set. A non-root user's effective set stays
//     empty, so it enters its working directory with its own rights.
//
// exec then gives a root user exactly the bounding set, and a non-root
// user nothing but the file capabilities of what it executes, within the
// bounding set (containerd's and runc's result; see containerCaps).
//
// These are capabilities in the container's user namespace (unless the pod
// has hostUsers: true): CAP_SYS_ADMIN or CAP_NET_ADMIN act only on
// namespaces that user namespace owns (the container's mount, PID and
// cgroup namespaces), never on the pod's network, IPC and UTS namespaces or
// anything of the host, which the host's user namespace owns.
func dropPrivileges(cfg *initConfig) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	// Capabilities the running kernel does not have cannot be granted:
	// capset would refuse bits beyond the last one.
	keep := uint64(cfg.Caps) & (1<<(last+1) - 1)
	if err := dropBounding(keep, last); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities across setuid: %w", err)
	}
	if err := setIdentity(cfg); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keep-capabilities: %w", err)
	}
	effective := keep
	if cfg.UID != 0 {
		effective = 0
	}
	return setCaps(keep, effective)
}

func dropBounding(keep uint64, last uintptr) error {
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

// setCaps sets the permitted and effective sets and empties the
// inheritable set, which would otherwise let file capabilities of the
// image regain what the bounding set still allows (CVE-2022-29162). An
// empty inheritable set empties the ambient set too: the kernel keeps no
// capability ambient that is not also inheritable.
func setCaps(permitted, effective uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(effective), Permitted: uint32(permitted)},
		{Effective: uint32(effective >> 32), Permitted: uint32(permitted >> 32)},
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
