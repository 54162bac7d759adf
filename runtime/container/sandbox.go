package container

import "github.com/peapod/peapod/runtime/sandbox"

// SandboxMounts returns the mounts that give a container its pod's files:
// /etc/hosts, /etc/hostname, /etc/resolv.conf, /dev/shm, /dev/mqueue and a
// read-only /sys showing the pod's network devices.
func SandboxMounts(sb *sandbox.Sandbox) []Mount {
	return []Mount{
		{Source: sb.Hosts, Destination: "/etc/hosts"},
		{Source: sb.Hostname, Destination: "/etc/hostname"},
		{Source: sb.ResolvConf, Destination: "/etc/resolv.conf"},
		{Source: sb.Shm, Destination: "/dev/shm"},
		{Source: sb.Mqueue, Destination: "/dev/mqueue"},
		{Source: sb.Sys, Destination: "/sys", ReadOnly: true},
	}
}
