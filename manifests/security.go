package manifests

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/node/util/sysctl"
)

// Policy holds the agent's settings that decide which pods are valid, as
// kubelet's flags do. The zero value is kubelet's default.
type Policy struct {
	// AllowedUnsafeSysctls are kubelet's --allowed-unsafe-sysctls: sysctl
	// names, or prefixes ending in "*" (net.core.*), that pods may set
	// beyond the safe ones. Only sysctls of the pod's network or IPC
	// namespace can be allowed; Check refuses others.
	AllowedUnsafeSysctls []string
}

// Check reports patterns of AllowedUnsafeSysctls that are malformed or do
// not name sysctls of a pod's network or IPC namespace, as kubelet refuses
// to start with them.
func (p Policy) Check() error {
	var errs []error
	for _, pattern := range p.AllowedUnsafeSysctls {
		if len(pattern) > maxSysctlLength || !sysctlPattern.MatchString(pattern) {
			errs = append(errs, fmt.Errorf("allowed unsafe sysctl %q: must have at most %d characters and match %s",
				pattern, maxSysctlLength, sysctlPattern))
			continue
		}
		if ns, _, _ := sysctl.GetNamespace(pattern); !podNamespaces.Has(ns) {
			errs = append(errs, fmt.Errorf("allowed unsafe sysctl %q: not a sysctl of the pod's network or IPC namespace "+
				"(net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)", pattern))
		}
	}
	return errors.Join(errs...)
}

// allows reports whether name (dot-separated) is in AllowedUnsafeSysctls.
func (p Policy) allows(name string) bool {
	for _, pattern := range p.AllowedUnsafeSysctls {
		pattern = sysctl.NormalizeName(pattern)
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == pattern {
			return true
		}
	}
	return false
}

// safeSysctls are kubelet's safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go
// of Kubernetes 1.37): namespaced, and without effect beyond the pod.
// Kubelet drops some of them on kernels too old to namespace them, the
// newest of those being 4.6; peapod needs 5.12 or later (idmapped mounts).
var safeSysctls = sets.New(
	"kernel.shm_rmid_forced",
	"net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.ping_group_range",
	"net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_rmem",
	"net.ipv4.tcp_wmem",
)

// podNamespaces are the namespaces whose sysctls peapod sets: the pod's
// own network and IPC namespaces. The UTS namespace is the host's for
// hostNetwork pods, and user namespaces are per container, made after the
// sandbox.
var podNamespaces = sets.New(sysctl.NetNamespace, sysctl.IPCNamespace)

// maxSysctlLength and the patterns are Kubernetes' (IsValidSysctlName and
// the kubelet allowlist's IsValidSysctlPattern): segments separated by "."
// or "/"; a pattern's last segment may end in "*".
const (
	maxSysctlLength = 253
	sysctlSegment   = `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`
)

var (
	sysctlName    = regexp.MustCompile(`^(` + sysctlSegment + `[\./])*` + sysctlSegment + `$`)
	sysctlPattern = regexp.MustCompile(`^(` + sysctlSegment + `[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]$`)
)

// validateSysctls checks spec.securityContext.sysctls as the API server
// (names, duplicates, hostNetwork) and kubelet's allowlist (safe or
// allowed unsafe) would, refusing at once what kubelet would refuse at
// admission.
func validateSysctls(f *findings, spec *corev1.PodSpec, policy Policy, p *field.Path) {
	if spec.SecurityContext == nil {
		return
	}
	seen := sets.New[string]()
	for i, s := range spec.SecurityContext.Sysctls {
		sp := p.Index(i)
		validateSysctlValue(f, sp.Child("value"), s.Value)
		switch {
		case s.Name == "":
			f.fail(sp.Child("name"), "required")
			continue
		case len(s.Name) > maxSysctlLength || !sysctlName.MatchString(s.Name):
			f.fail(sp.Child("name"), "%q must have at most %d characters and match %s", s.Name, maxSysctlLength, sysctlName)
			continue
		}
		name := sysctl.NormalizeName(s.Name)
		if name == "net.ipv4.ping_group_range" && !isGroupRange(s.Value) {
			f.fail(sp.Child("value"), "want two group IDs, FIRST LAST, not %q", s.Value)
		}
		if seen.Has(name) {
			f.fail(sp.Child("name"), "duplicate sysctl %q", s.Name)
		}
		seen.Insert(name)
		validateSysctlName(f, sp.Child("name"), name, spec.HostNetwork, policy)
	}
}

func validateSysctlName(f *findings, p *field.Path, name string, hostNetwork bool, policy Policy) {
	ns, _, _ := sysctl.GetNamespace(name)
	switch {
	case !podNamespaces.Has(ns):
		f.fail(p, "%q is not a sysctl of the pod's network or IPC namespace: peapod sets net.*, kernel.shm*, kernel.msg*, "+
			"kernel.sem and fs.mqueue.* only", name)
	case ns == sysctl.NetNamespace && hostNetwork:
		f.fail(p, "%q may not be specified when 'hostNetwork' is true", name)
	case !safeSysctls.Has(name) && !policy.allows(name):
		f.fail(p, "unsafe sysctl %q is not allowed: the agent's --allowed-unsafe-sysctls must list it", name)
	}
}

// validateSysctlValue refuses a value that could not be one write to
// /proc/sys; the kernel judges the rest when the sandbox is created.
func validateSysctlValue(f *findings, p *field.Path, v string) {
	switch {
	case strings.TrimSpace(v) == "":
		f.fail(p, "required")
	case strings.ContainsAny(v, "\n\x00"):
		f.fail(p, "must be one line")
	}
}

// isGroupRange reports whether v is ping_group_range's "FIRST LAST", the
// form the runtime maps to the pod's host group IDs.
func isGroupRange(v string) bool {
	f := strings.Fields(v)
	if len(f) != 2 {
		return false
	}
	for _, id := range f {
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			return false
		}
	}
	return true
}

// validateCapabilities checks the names of a container's capabilities.add
// and .drop, and Kubernetes' rule that a container without privilege
// escalation cannot be given CAP_SYS_ADMIN.
func validateCapabilities(f *findings, sc *corev1.SecurityContext, p *field.Path) {
	if sc == nil || sc.Capabilities == nil {
		return
	}
	for _, list := range []struct {
		name string
		caps []corev1.Capability
	}{{"add", sc.Capabilities.Add}, {"drop", sc.Capabilities.Drop}} {
		for i, c := range list.caps {
			if !knownCapability(string(c)) {
				f.fail(p.Child("capabilities", list.name).Index(i), "unknown capability %q: use a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL", c)
			}
		}
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		return
	}
	for _, c := range sc.Capabilities.Add {
		if capabilityName(string(c)) == capability.CAP_SYS_ADMIN.String() {
			f.fail(p, "cannot set allowPrivilegeEscalation to false and capabilities.add %s", c)
		}
	}
}

// capabilityName is a capability as the library names it (net_admin) from
// a name as Kubernetes users write it: NET_ADMIN or CAP_NET_ADMIN, in any
// case. runtime/container reads the names the same way.
func capabilityName(name string) string {
	return strings.TrimPrefix(strings.ToLower(name), "cap_")
}

func knownCapability(name string) bool {
	if strings.EqualFold(name, "ALL") {
		return true
	}
	want := capabilityName(name)
	for _, c := range capability.ListKnown() {
		if c.String() == want {
			return true
		}
	}
	return false
}
