package container

import (
	"fmt"
	"strings"

	"github.com/moby/sys/capability"
)

// capSet is a set of capabilities: bit n stands for capability n.
type capSet uint64

// defaultCaps is the capability set of a Kubernetes container without a
// securityContext (containerd's and docker's default). Notably absent:
// CAP_SYS_ADMIN, so the command cannot unmount a mask or remount a
// read-only volume writable, even as root of its user namespace.
var defaultCaps = capsOf(
	capability.CAP_CHOWN, capability.CAP_DAC_OVERRIDE, capability.CAP_FSETID, capability.CAP_FOWNER,
	capability.CAP_MKNOD, capability.CAP_NET_RAW, capability.CAP_SETGID, capability.CAP_SETUID,
	capability.CAP_SETFCAP, capability.CAP_SETPCAP, capability.CAP_NET_BIND_SERVICE,
	capability.CAP_SYS_CHROOT, capability.CAP_KILL, capability.CAP_AUDIT_WRITE,
)

// allCaps is every capability the capability library knows. The init stage
// keeps only those the running kernel has (see dropPrivileges).
var allCaps = capsOf(capability.ListKnown()...)

func capsOf(caps ...capability.Cap) capSet {
	var s capSet
	for _, c := range caps {
		s |= 1 << c
	}
	return s
}

// containerCaps returns the capability set of a container whose
// securityContext.capabilities adds add and drops drop, computed as
// containerd's CRI does: from the default set, ALL in add gives every
// capability and ALL in drop none (drop wins), then the named ones are
// added, then the named ones dropped. A capability both added and dropped
// is dropped.
//
// The set is the container's bounding set, and the permitted and effective
// sets of a root user. A non-root user starts with empty permitted and
// effective sets and gains capabilities only from the file capabilities of
// what it executes, within the bounding set; ambient and inheritable sets
// are always empty. That is what containerd and runc produce too.
func containerCaps(add, drop []string) (capSet, error) {
	set := defaultCaps
	if hasAll(add) {
		set = allCaps
	}
	if hasAll(drop) {
		set = 0
	}
	for _, name := range add {
		if strings.EqualFold(name, "ALL") {
			continue
		}
		c, err := parseCap(name)
		if err != nil {
			return 0, fmt.Errorf("capabilities.add: %w", err)
		}
		set |= 1 << c
	}
	for _, name := range drop {
		if strings.EqualFold(name, "ALL") {
			continue
		}
		c, err := parseCap(name)
		if err != nil {
			return 0, fmt.Errorf("capabilities.drop: %w", err)
		}
		set &^= 1 << c
	}
	return set, nil
}

func hasAll(names []string) bool {
	for _, n := range names {
		if strings.EqualFold(n, "ALL") {
			return true
		}
	}
	return false
}

// parseCap parses a capability as Kubernetes users write it: NET_ADMIN,
// with or without CAP_, in any case (containerd upper-cases the names).
func parseCap(name string) (capability.Cap, error) {
	want := strings.ToLower(name)
	want = strings.TrimPrefix(want, "cap_")
	for _, c := range capability.ListKnown() {
		if c.String() == want {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown capability %q", name)
}

// Capabilities returns the kernel's names (CAP_NET_ADMIN) of the
// capabilities of a container whose securityContext.capabilities adds add
// and drops drop (see containerCaps), as seccomp profiles name them in
// their includes and excludes.
func Capabilities(add, drop []string) ([]string, error) {
	set, err := containerCaps(add, drop)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range capability.ListKnown() {
		if set&(1<<c) != 0 {
			names = append(names, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return names, nil
}

// DefaultCapabilities returns the names of the capabilities of a container
// without securityContext.capabilities.
func DefaultCapabilities() []string {
	names, _ := Capabilities(nil, nil)
	return names
}
