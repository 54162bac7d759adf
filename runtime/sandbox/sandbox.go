// Package sandbox creates and removes a pod's shared namespaces and files.
//
// A sandbox lives in the pod's state directory:
//
//	ns/{net,ipc,uts}              namespace pins (bind mounts of nsfs files)
//	shm/                          the pod's /dev/shm (tmpfs)
//	mqueue/                       mqueue of the pod IPC namespace
//	sys/                          sysfs of the pod network namespace, read-only
//	etc/{hostname,hosts,resolv.conf}
//
// Containers join the pinned namespaces and bind-mount the rest.
package sandbox

import (
	"bytes"
	"fmt"
	"path/filepath"
)

// DefaultShmSize is the size of /dev/shm when Config.ShmSize is zero, as in
// docker and podman.
const DefaultShmSize = 64 << 20

// Config describes the sandbox to create.
type Config struct {
	// Dir is the pod's state directory, e.g. /run/peapod/pods/<uid>.
	Dir string
	// Hostname is set in the new UTS namespace and written to etc/hostname.
	// For a hostNetwork pod, pass the host's name: the UTS namespace is the host's.
	Hostname string
	// HostNetwork joins the host's network and UTS namespaces, as kubelet
	// does for hostNetwork pods; the IPC namespace is still new.
	HostNetwork bool
	// ShmSize is the size of /dev/shm in bytes; zero means DefaultShmSize.
	ShmSize int64
	// ResolvConf is written verbatim to etc/resolv.conf.
	ResolvConf []byte
	// HostHosts is the host's hosts file, which a hostNetwork pod gets a
	// copy of, as in kubelet; empty means /etc/hosts.
	HostHosts string
	// Sysctls are set in the pod's network and IPC namespaces, in order,
	// when they are entered; only sysctls of those namespaces are accepted,
	// and no network one for a HostNetwork sandbox.
	Sysctls []Sysctl
}

// Sandbox names what Create made. Every path is absolute.
type Sandbox struct {
	Dir string
	// NetNS and UTSNS are empty for a hostNetwork pod (the host's are used).
	NetNS, IPCNS, UTSNS string
	// Shm, Mqueue and Sys are directories to bind onto /dev/shm,
	// /dev/mqueue and /sys.
	Shm, Mqueue, Sys string
	// Hostname, Hosts and ResolvConf are files to bind onto /etc/hostname,
	// /etc/hosts and /etc/resolv.conf.
	Hostname, Hosts, ResolvConf string
}

// Layout names the files of the sandbox in dir as Create lays them out,
// without touching anything: a restarted agent finds a pod's namespaces
// and files with it.
func Layout(dir string, hostNetwork bool) *Sandbox {
	s := &Sandbox{
		Dir:        dir,
		IPCNS:      filepath.Join(dir, "ns", "ipc"),
		Shm:        filepath.Join(dir, "shm"),
		Mqueue:     filepath.Join(dir, "mqueue"),
		Sys:        filepath.Join(dir, "sys"),
		Hostname:   filepath.Join(dir, "etc", "hostname"),
		Hosts:      filepath.Join(dir, "etc", "hosts"),
		ResolvConf: filepath.Join(dir, "etc", "resolv.conf"),
	}
	if !hostNetwork {
		s.NetNS = filepath.Join(dir, "ns", "net")
		s.UTSNS = filepath.Join(dir, "ns", "uts")
	}
	return s
}

// hostsFile renders /etc/hosts as kubelet does: the localhost lines, then
// one line per pod IP naming the pod's hostname.
func hostsFile(hostname string, ips []string) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	return b.Bytes()
}

// hostNetworkHostsFile renders /etc/hosts of a hostNetwork pod as kubelet
// does: a copy of the host's, so the host's own name and entries resolve
// (etcd and the kubeadm static pods rely on it).
func hostNetworkHostsFile(host []byte) []byte {
	return append([]byte("# Kubernetes-managed hosts file (host network).\n"), host...)
}

// WriteHosts (re)writes dir/etc/hosts for the pod's hostname and IPs. It
// rewrites the file in place rather than renaming a new one over it: a
// container that already bind-mounted the file keeps seeing its inode.
func WriteHosts(dir, hostname string, ips []string) error {
	return writeInPlace(filepath.Join(dir, "etc", "hosts"), hostsFile(hostname, ips))
}
