// Package container starts one container: a process in its own user, PID,
// mount and cgroup namespaces that joins its pod's network, IPC and UTS
// namespaces and runs on an overlay of a read-only image directory.
//
// Start runs in the parent (the pod's shim), which stays privileged in the
// host user namespace and prepares every mount as a detached mount: the
// overlay rootfs (its lower layer idmapped to the pod's ID range), volumes,
// and the sandbox's files. It then re-executes the peapod binary as the init
// stage (RunInit) inside the new namespaces and hands it those mounts over a
// socket. The init stage attaches them, builds /dev and /proc, pivots into
// the rootfs, drops privileges and execs the container's command. Nothing
// is ever mounted in the host's mount namespace, so a container that dies,
// or a shim that is killed, leaves no mount behind.
//
// Exec runs a further process in a running container: util-linux nsenter
// joins its namespaces (a Go process cannot join a user or mount
// namespace, and peapod has no cgo), then the exec stage (RunExec) applies
// the container's identity and privileges through the init stage's last
// steps; exec_linux.go says why and in which order.
package container

import (
	"os"

	"github.com/peapod/peapod/runtime/seccomp"
)

// InitArg is os.Args[1] of the init stage. The program's main must call
// RunInit, before anything else, when it sees it.
const InitArg = "internal-init"

// IDMap maps container IDs 0..Size-1 to host IDs HostID..HostID+Size-1, for
// both users and groups.
type IDMap struct {
	HostID, Size uint32
}

// Mount is one mount in the container.
type Mount struct {
	// Source is a host path; unused for tmpfs.
	Source string
	// Destination is an absolute path in the container. It is resolved
	// inside the rootfs: symlinks in the image cannot point it outside.
	Destination string
	// ReadOnly makes the mount and every mount below it read-only.
	ReadOnly bool
	// Type is "bind" (the default when empty) or "tmpfs".
	Type string
	// Data holds tmpfs options, e.g. "size=64m,mode=1777".
	Data string
	// IDMap shows the source's files to the container with the owners the
	// host sees, as the rootfs does (host ID n appears as n), and stores
	// what the container writes with container IDs, instead of showing host
	// owners outside the pod's range as nobody. It needs UserNS and a file
	// system that supports idmapped mounts (not sysfs or mqueue).
	IDMap bool
	// SubPath, when set, mounts Source/SubPath instead of Source. It must
	// stay beneath Source: a path that leaves it, through "..", an absolute
	// symlink or a symlink pointing outside, is refused. Missing directories
	// are created.
	SubPath string
}

// CgroupPlacer puts a container into its cgroups as it is created.
type CgroupPlacer interface {
	// CgroupFD returns an open cgroup2 directory fd for CLONE_INTO_CGROUP
	// (SysProcAttr.UseCgroupFD), ok=false when there is no usable cgroup2
	// (cgroup v1 holds the limits): the container's first process then
	// starts in the caller's cgroups and PlaceProcess moves it.
	CgroupFD() (fd int, ok bool)
	// PlaceProcess moves process pid, with all its threads, into the
	// container's cgroups (cgroup v1: its PID into each hierarchy's
	// cgroup.procs). Start calls it only when CgroupFD reports ok=false,
	// before the process runs anything of the container's; it is a no-op
	// where CgroupFD did the job.
	PlaceProcess(pid int) error
}

// Spec describes one container to start. It can be sent as JSON, without
// Stdout, Stderr and Cgroup, which the starting process supplies.
type Spec struct {
	// ID names the container in errors, e.g. "peapod://<uid>/<name>/<attempt>".
	ID string
	// Args is the command; Args[0] is looked up in the PATH of Env when it
	// has no slash.
	Args []string
	Env  []string
	// Cwd is the working directory, created if missing; "" means "/".
	Cwd string
	// UID, GID and AdditionalGIDs are the identity inside the container.
	UID, GID       uint32
	AdditionalGIDs []uint32
	// NoNewPrivileges sets no_new_privs before exec, so setuid binaries and
	// file capabilities grant nothing (allowPrivilegeEscalation: false).
	NoNewPrivileges bool
	// CapAdd and CapDrop are Kubernetes' securityContext.capabilities.add
	// and .drop: names such as NET_ADMIN or CAP_NET_ADMIN in any case, or
	// ALL. Both empty give the default set of containerd.
	CapAdd, CapDrop []string
	// ReadOnlyRootfs makes the overlay root read-only; the mounts on it
	// (volumes, /dev, /proc, the sandbox's files) keep their own modes.
	ReadOnlyRootfs bool
	// Seccomp, when set, is the filter the command runs under, compiled
	// for its capabilities; nil runs it unconfined. A process later
	// started in the container (exec) must install the same program.
	Seccomp *seccomp.Program
	// Lower are the read-only image layer directories, the base layer
	// first, in overlay's format (whiteouts are 0/0 character devices,
	// opaque directories carry trusted.overlay.opaque=y). A rootfs: image
	// is one layer. At most 500.
	Lower Layers
	// Dir is the container's directory on disk; Start makes upper/ and
	// work/ in it for the overlay, and Cleanup removes them. An upper/ left
	// by an earlier Start is reused as is: give each attempt its own Dir,
	// or Cleanup first, for a fresh rootfs.
	Dir string
	// UserNS is the pod's ID mapping; nil runs the container in the host
	// user namespace (hostUsers: true).
	UserNS *IDMap
	// NetNS, IPCNS and UTSNS are pinned namespace files to join; "" keeps
	// the caller's (the host's) namespace.
	NetNS, IPCNS, UTSNS string
	// Mounts are applied parents first (fewest path components first), so
	// /dev/shm lands on the container's /dev and /sys/x on /sys.
	Mounts []Mount
	// Stdout and Stderr receive the container's output; nil means
	// /dev/null. Stdin is always /dev/null.
	Stdout, Stderr *os.File `json:"-"`
	// Cgroup, when set, places the container in its cgroups before it
	// runs any of its command; its cgroup namespace is rooted there.
	Cgroup CgroupPlacer `json:"-"`
}

// initConfig is what the parent sends the init stage, as JSON, next to the
// mounts it prepared: the rootfs is mount 0.
type initConfig struct {
	Args            []string
	Env             []string
	Cwd             string
	UID, GID        uint32
	AdditionalGIDs  []uint32
	NoNewPrivileges bool
	// Caps is the bounding set, and the permitted and effective sets of
	// root (see containerCaps).
	Caps           capSet
	ReadOnlyRootfs bool
	Seccomp        *seccomp.Program
	Mounts         []initMount
	// UnshareCgroupNS tells the init stage that it was moved into its
	// cgroups after it started, in the parent's cgroup namespace, and must
	// create its own now that it is in place (see placeInitStage).
	UnshareCgroupNS bool
}

// initMount is one mount for the init stage to attach.
type initMount struct {
	Destination string
	// FD indexes the mounts sent with the config; -1 for a tmpfs.
	FD int
	// Dir tells whether the destination is a directory or a file.
	Dir      bool
	Data     string
	ReadOnly bool
}
