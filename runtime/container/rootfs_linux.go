package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// prepareUpper makes the overlay's upper and work directories, owned by the
// container's root so that the merged root directory (which takes its owner
// from upper) and every file copied up belong to the container.
func prepareUpper(spec *Spec) (upper, work string, err error) {
	upper, work = filepath.Join(spec.Dir, "upper"), filepath.Join(spec.Dir, "work")
	owner := 0
	if spec.UserNS != nil {
		owner = int(spec.UserNS.HostID)
	}
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
		if err := os.Chown(d, owner, owner); err != nil {
			return "", "", err
		}
	}
	return upper, work, nil
}

// mountRootfs builds the container's rootfs as a detached overlay mount and
// returns it. userns is the container's user namespace, or nil.
//
// The image directory is owned by host IDs (root is 0), which a container
// with its own user namespace would see as nobody and could not use. So the
// lower layer is an idmapped clone of it: a file owned by host ID n appears
// owned by n in the container and is handled as HostID+n by the kernel.
// Overlay itself cannot be idmapped, hence the clone underneath it. The lower
// clone is read-only as well, so nothing can write the image through it.
func mountRootfs(spec *Spec, upper, work string, userns *os.File) (*os.File, error) {
	lower, err := openLower(spec.Lower, userns)
	if err != nil {
		return nil, err
	}
	defer lower.Close()
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open overlay: %w", err)
	}
	defer unix.Close(fs)
	detach, err := setLower(fs, lower, spec.Dir)
	if err != nil {
		return nil, err
	}
	err = createOverlay(fs, upper, work)
	if derr := detach(); err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("create overlay on %s: %w", spec.Lower, err)
	}
	mfd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return nil, fmt.Errorf("mount overlay on %s: %w", spec.Lower, err)
	}
	return os.NewFile(uintptr(mfd), "rootfs"), nil
}

func createOverlay(fs int, upper, work string) error {
	if err := unix.FsconfigSetString(fs, "upperdir", upper); err != nil {
		return fmt.Errorf("upperdir %s: %w", upper, err)
	}
	if err := unix.FsconfigSetString(fs, "workdir", work); err != nil {
		return fmt.Errorf("workdir %s: %w", work, err)
	}
	return unix.FsconfigCreate(fs)
}

// openLower clones the image directory into a detached, read-only mount,
// idmapped to userns when there is one.
func openLower(dir string, userns *os.File) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone rootfs %s: %w", dir, err)
	}
	lower := os.NewFile(uintptr(fd), dir)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if userns != nil {
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(userns.Fd())
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		lower.Close()
		if userns != nil && errors.Is(err, unix.EINVAL) {
			// A file system without idmapping support (tmpfs before 6.3,
			// NFS, ...) would show every image file as nobody: refuse
			// rather than start a container that cannot read its files.
			return nil, fmt.Errorf("rootfs %s: its file system does not support idmapped mounts (%w); "+
				"keep images on ext4, xfs or btrfs, or run the pod with hostUsers: true", dir, err)
		}
		return nil, fmt.Errorf("set up rootfs %s: %w", dir, err)
	}
	return lower, nil
}

// setLower hands the lower layer to overlay. Linux 6.8+ takes the detached
// mount itself ("lowerdir+"); older kernels reject the key (EINVAL on some,
// EOPNOTSUPP on 6.1, where FSCONFIG_SET_FD is not supported for overlay's
// lowerdir at all) and need a path, so the mount is attached at dir/lower until overlay has taken
// its own private clone of it (at FSCONFIG_CMD_CREATE on kernels that parse
// options late). The caller runs detach once the overlay is created.
func setLower(fs int, lower *os.File, dir string) (detach func() error, err error) {
	err = unix.FsconfigSetFd(fs, "lowerdir+", int(lower.Fd()))
	if err == nil {
		return func() error { return nil }, nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return nil, fmt.Errorf("overlay lowerdir+: %w", err)
	}
	return setLowerByPath(fs, lower, filepath.Join(dir, "lower"))
}

func setLowerByPath(fs int, lower *os.File, mnt string) (detach func() error, err error) {
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, err
	}
	if err := unix.MoveMount(int(lower.Fd()), "", unix.AT_FDCWD, mnt, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return nil, fmt.Errorf("attach rootfs lower layer on %s: %w", mnt, err)
	}
	detach = func() error {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach rootfs lower layer: %w", err)
		}
		return nil
	}
	if err := unix.FsconfigSetString(fs, "lowerdir", mnt); err != nil {
		return nil, errors.Join(fmt.Errorf("overlay lowerdir %s: %w", mnt, err), detach())
	}
	return detach, nil
}

// readOnlyRoot makes the attached rootfs mount read-only
// (readOnlyRootFilesystem). It comes after every mount point has been
// created in the rootfs, which a read-only root would refuse, and is not
// recursive: the mounts on the rootfs (volumes, /dev, /proc, the sandbox's
// files) keep their own modes, as with runc's read-only remount.
//
// The mount came to this mount namespace detached, not copied from a more
// privileged one, so the kernel does not lock the flag: a container given
// CAP_SYS_ADMIN could remount it writable, as it could under runc.
func readOnlyRoot(root *os.File) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(int(root.Fd()), "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("make rootfs read-only: %w", err)
	}
	return nil
}

// Cleanup removes what Start left on disk for spec: the overlay's upper and
// work directories. Call it once the container's processes are gone: the
// overlay lives in the container's mount namespace and dies with it.
func Cleanup(spec *Spec) error {
	var errs []error
	for _, d := range []string{"upper", "work", "lower"} {
		errs = append(errs, os.RemoveAll(filepath.Join(spec.Dir, d)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up container %s: %w", spec.ID, err)
	}
	return nil
}
