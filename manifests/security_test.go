package manifests

import (
	"strings"
	"testing"
)

func TestDecodeSecurityValid(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		policy Policy
	}{
		{"hardened container", manifest("  securityContext: {runAsNonRoot: true, runAsUser: 1000}\n",
			"    securityContext:\n      allowPrivilegeEscalation: false\n      readOnlyRootFilesystem: true\n"+
				"      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}\n"), Policy{}},
		{"capability spellings", manifest("", "    securityContext: {capabilities: {add: [CAP_NET_ADMIN, sys_time, Sys_Ptrace, all], drop: [all, cap_chown]}}\n"), Policy{}},
		{"escalation allowed", manifest("", "    securityContext: {allowPrivilegeEscalation: true, capabilities: {add: [SYS_ADMIN]}}\n"), Policy{}},
		{"runAsNonRoot without runAsUser: the runtime checks the image", manifest("", "    securityContext: {runAsNonRoot: true}\n"), Policy{}},
		{"safe sysctls", manifest("  securityContext:\n    sysctls:\n"+
			"    - {name: net.ipv4.ip_local_port_range, value: '32768 60999'}\n"+
			"    - {name: kernel/shm_rmid_forced, value: '1'}\n"+
			"    - {name: net.ipv4.ping_group_range, value: '0 2147483647'}\n", ""), Policy{}},
		{"allowed unsafe sysctls", manifest("  securityContext:\n    sysctls:\n"+
			"    - {name: net.core.somaxconn, value: '1024'}\n    - {name: kernel.msgmax, value: '65536'}\n"+
			"    - {name: net/ipv4/conf/eth0.100/rp_filter, value: '1'}\n", ""),
			Policy{AllowedUnsafeSysctls: []string{"net.core.*", "kernel.msgmax", "net/ipv4/conf/*"}}},
		{"IPC sysctl with hostNetwork", manifest("  hostNetwork: true\n  securityContext: {sysctls: [{name: kernel.shm_rmid_forced, value: '1'}]}\n", ""), Policy{}},
	}
	for _, tt := range tests {
		if _, err := tt.policy.Decode("/m/web.yaml", []byte(tt.data)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestDecodeSecurityInvalid(t *testing.T) {
	sysctls := func(lines string) string { return manifest("  securityContext:\n    sysctls:\n"+lines, "") }
	tests := []struct {
		name   string
		data   string
		policy Policy
		want   string
	}{
		{"unknown capability", manifest("", "    securityContext: {capabilities: {add: [NET_ADMINS]}}\n"), Policy{},
			`spec.containers[0].securityContext.capabilities.add[0]: unknown capability "NET_ADMINS"`},
		{"unknown dropped capability", manifest("", "    securityContext: {capabilities: {drop: [CHOWN, CAP_CAP_KILL]}}\n"), Policy{},
			`spec.containers[0].securityContext.capabilities.drop[1]: unknown capability "CAP_CAP_KILL"`},
		{"no escalation with SYS_ADMIN", manifest("", "    securityContext: {allowPrivilegeEscalation: false, capabilities: {add: [CAP_SYS_ADMIN]}}\n"), Policy{},
			"spec.containers[0].securityContext: cannot set allowPrivilegeEscalation to false and capabilities.add CAP_SYS_ADMIN"},
		{"runAsNonRoot as root", manifest("", "    securityContext: {runAsNonRoot: true, runAsUser: 0}\n"), Policy{},
			"spec.containers[0].securityContext.runAsNonRoot: the container would run as root (runAsUser 0)"},
		{"privileged", manifest("", "    securityContext: {privileged: true}\n"), Policy{},
			"spec.containers[0].securityContext.privileged: not supported: containers are never privileged"},
		{"unmasked proc", manifest("", "    securityContext: {procMount: Unmasked}\n"), Policy{},
			"spec.containers[0].securityContext.procMount: not supported: /proc is always masked"},
		{"unsafe sysctl", sysctls("    - {name: net.core.somaxconn, value: '1024'}\n"), Policy{},
			`spec.securityContext.sysctls[0].name: unsafe sysctl "net.core.somaxconn" is not allowed: the agent's --allowed-unsafe-sysctls must list it`},
		{"unsafe sysctl, other one allowed", sysctls("    - {name: net.core.somaxconn, value: '1024'}\n"), Policy{AllowedUnsafeSysctls: []string{"net.core.rmem_max", "net.ipv4.*"}},
			`sysctls[0].name: unsafe sysctl "net.core.somaxconn" is not allowed`},
		{"host sysctl", sysctls("    - {name: kernel.panic, value: '10'}\n"), Policy{AllowedUnsafeSysctls: []string{"net.*"}},
			`spec.securityContext.sysctls[0].name: "kernel.panic" is not a sysctl of the pod's network or IPC namespace`},
		{"vm sysctl", sysctls("    - {name: vm.overcommit_memory, value: '1'}\n"), Policy{},
			`"vm.overcommit_memory" is not a sysctl of the pod's network or IPC namespace`},
		{"UTS sysctl", sysctls("    - {name: kernel.domainname, value: x}\n"), Policy{},
			`"kernel.domainname" is not a sysctl of the pod's network or IPC namespace`},
		{"net sysctl with hostNetwork", manifest("  hostNetwork: true\n  securityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}\n", ""), Policy{},
			`spec.securityContext.sysctls[0].name: "net.ipv4.tcp_syncookies" may not be specified when 'hostNetwork' is true`},
		{"malformed name", sysctls("    - {name: 'net..ipv4', value: '1'}\n"), Policy{},
			`spec.securityContext.sysctls[0].name: "net..ipv4" must have at most 253 characters and match`},
		{"upper-case name", sysctls("    - {name: Net.ipv4.tcp_syncookies, value: '1'}\n"), Policy{}, `sysctls[0].name: "Net.ipv4.tcp_syncookies" must have`},
		{"path escape", sysctls("    - {name: net/../kernel/panic, value: '1'}\n"), Policy{}, `sysctls[0].name: "net/../kernel/panic" must have`},
		{"no name", sysctls("    - {value: '1'}\n"), Policy{}, "spec.securityContext.sysctls[0].name: required"},
		{"no value", sysctls("    - {name: net.ipv4.tcp_syncookies}\n"), Policy{}, "spec.securityContext.sysctls[0].value: required"},
		{"ping group range", sysctls("    - {name: net.ipv4.ping_group_range, value: 'all'}\n"), Policy{},
			`spec.securityContext.sysctls[0].value: want two group IDs, FIRST LAST, not "all"`},
		{"ping group range too big", sysctls("    - {name: net/ipv4/ping_group_range, value: '0 4294967296'}\n"), Policy{},
			`spec.securityContext.sysctls[0].value: want two group IDs, FIRST LAST, not "0 4294967296"`},
		{"two lines", sysctls("    - {name: net.ipv4.tcp_syncookies, value: \"1\\n0\"}\n"), Policy{}, "spec.securityContext.sysctls[0].value: must be one line"},
		{"duplicate", sysctls("    - {name: net.ipv4.tcp_syncookies, value: '1'}\n    - {name: net/ipv4/tcp_syncookies, value: '0'}\n"), Policy{},
			`spec.securityContext.sysctls[1].name: duplicate sysctl "net/ipv4/tcp_syncookies"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.policy.Decode("/m/web.yaml", []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	good := Policy{AllowedUnsafeSysctls: []string{"net.core.*", "net/ipv4/tcp_max_syn_backlog", "kernel.shm*", "kernel.msgmax", "fs.mqueue.*", "kernel.sem"}}
	if err := good.Check(); err != nil {
		t.Errorf("Check(%q): %v", good.AllowedUnsafeSysctls, err)
	}
	for _, pattern := range []string{"*", "kernel.*", "kernel.panic", "vm.*", "user.max_user_namespaces", "kernel.domainname", "net..core", "net.core*x", "Net.*"} {
		if err := (Policy{AllowedUnsafeSysctls: []string{pattern}}).Check(); err == nil {
			t.Errorf("Check accepted %q", pattern)
		}
	}
}
