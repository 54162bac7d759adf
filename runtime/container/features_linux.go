package container

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Features are the kernel facilities the container runtime adapts to.
type Features struct {
	// OverlayLowerdirFD: overlay takes a detached lower layer by descriptor
	// ("lowerdir+", Linux 6.8+). Without it the lower layer is attached to a
	// path for the moment overlay is created.
	OverlayLowerdirFD bool
	// IDMappedMounts: mount_setattr(MOUNT_ATTR_IDMAP) exists (Linux 5.12+).
	// Whether an image's file system supports it is checked per container.
	IDMappedMounts bool
}

// ProbeFeatures asks the kernel, cheaply and without mounting anything.
func ProbeFeatures() Features {
	return Features{
		OverlayLowerdirFD: probeLowerdirFD(),
		IDMappedMounts:    probeMountSetattr(),
	}
}

// probeLowerdirFD offers overlay a descriptor for "lowerdir+": kernels that
// know the key accept it at fsconfig time (the directory is only used at
// create), older ones refuse with EINVAL or EOPNOTSUPP.
func probeLowerdirFD() bool {
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fs)
	dir, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dir)
	return unix.FsconfigSetFd(fs, "lowerdir+", dir) == nil
}

// probeMountSetattr calls mount_setattr with no attributes on an invalid
// descriptor: a kernel that has the system call answers EBADF, one that
// does not, ENOSYS.
func probeMountSetattr() bool {
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
