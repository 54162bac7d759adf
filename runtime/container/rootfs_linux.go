package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// maxLayers is overlay's limit on lower layers (OVL_MAX_STACK).
const maxLayers = 500

// mountRootfs builds the container's rootfs as a detached overlay mount and
// returns it. userns is the container's user namespace, or nil.
//
// The image's layer directories are owned by host IDs (root is 0), which a
// container with its own user namespace would see as nobody and could not
// use. So each lower layer is an idmapped clone of its directory: a file
// owned by host ID n appears owned by n in the container and is handled as
// HostID+n by the kernel. Overlay itself cannot be idmapped, hence the clones
// underneath it. The clones are read-only as well, so nothing can write an
// image layer through them.
func mountRootfs(spec *Spec, upper, work string, userns *os.File) (*os.File, error) {
	if len(spec.Lower) > maxLayers {
		return nil, fmt.Errorf("image has %d layers; overlay stacks at most %d: flatten the image", len(spec.Lower), maxLayers)
	}
	lowers, err := openLowers(spec.Lower, userns)
	if err != nil {
		return nil, err
	}
	defer closeAll(lowers)
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open overlay: %w", err)
	}
	defer unix.Close(fs)
	err = setLowersByFD(fs, lowers)
	if errors.Is(err, errNoLowerdirFD) {
		rootfs, err := mountByPath(lowers, spec.Dir, upper, work)
		if err != nil {
			return nil, fmt.Errorf("mount overlay on %s: %w", describeLayers(spec.Lower), err)
		}
		return rootfs, nil
	}
	if err == nil {
		err = createOverlay(fs, upper, work)
	}
	if err != nil {
		return nil, fmt.Errorf("create overlay on %s: %w", describeLayers(spec.Lower), err)
	}
	mfd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return nil, fmt.Errorf("mount overlay on %s: %w", describeLayers(spec.Lower), err)
	}
	return os.NewFile(uintptr(mfd), "rootfs"), nil
}

// describeLayers names the layers in an error: the only one, or the top
// one and how many there are.
func describeLayers(layers []string) string {
	if len(layers) == 1 {
		return layers[0]
	}
	return fmt.Sprintf("%d layers (top %s)", len(layers), layers[len(layers)-1])
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

// openLowers clones every layer directory, base first, as openLower does.
func openLowers(dirs []string, userns *os.File) ([]*os.File, error) {
	lowers := make([]*os.File, 0, len(dirs))
	for _, d := range dirs {
		l, err := openLower(d, userns)
		if err != nil {
			closeAll(lowers)
			return nil, err
		}
		lowers = append(lowers, l)
	}
	return lowers, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// openLower clones a layer directory into a detached, read-only mount,
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

// errNoLowerdirFD: the kernel does not take lower layers by descriptor.
var errNoLowerdirFD = errors.New("overlay takes no lowerdir+ descriptors")

// setLowersByFD gives overlay each layer with "lowerdir+", which Linux
// 6.8+ takes as a detached mount. Older kernels reject the key (EINVAL on
// some, EOPNOTSUPP on 6.1, where FSCONFIG_SET_FD is not supported for
// overlay's lowerdir at all): errNoLowerdirFD, see mountByPath.
//
// Every "lowerdir+" appends a layer BELOW the ones given before (as in
// lowerdir=top:...:base, the first is the topmost lower layer), so the
// layers go in from the top down; TestLayers fails if they are reversed.
func setLowersByFD(fs int, lowers []*os.File) error {
	for i := len(lowers) - 1; i >= 0; i-- {
		err := unix.FsconfigSetFd(fs, "lowerdir+", int(lowers[i].Fd()))
		if err == nil {
			continue
		}
		if i == len(lowers)-1 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
			return errNoLowerdirFD
		}
		return fmt.Errorf("overlay lowerdir+ %s: %w", lowers[i].Name(), err)
	}
	return nil
}

// mountByPath mounts the overlay the way kernels before 6.8 need, and
// returns a detached copy of it. The layers are attached at dir/lower/0
// (base) .. N-1 (top), because overlay needs their paths and clones each
// with clone_private_mount, which refuses a mount outside the caller's
// mount namespace (a detached one). They are named in one
// "lowerdir=top:...:base" option: fsconfig takes at most 255 bytes for it
// (about 12 layers), so the overlay is mounted with mount(2), whose
// options may fill a page, at dir/merged, cloned detached, and unmounted
// at once; every attached mount is gone when this returns. The names go
// through a descriptor of dir/lower (/proc/self/fd/D/i, about 20 bytes
// a layer), so some 190 layers fit; an image with more is refused with
// the reason.
func mountByPath(lowers []*os.File, dir, upper, work string) (rootfs *os.File, err error) {
	mnt, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "merged")
	if strings.ContainsAny(upper+work, ",:\\") {
		return nil, fmt.Errorf("overlay directories %s, %s: a comma, colon or backslash cannot be passed to mount(2)", upper, work)
	}
	defer func() {
		// A layer or the overlay that failed to detach fails the start.
		if err != nil && rootfs != nil {
			rootfs.Close()
			rootfs = nil
		}
	}()
	for _, d := range []string{mnt, merged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	base, err := os.OpenFile(mnt, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	names := make([]string, len(lowers))
	for i := range lowers {
		names[len(lowers)-1-i] = fmt.Sprintf("/proc/self/fd/%d/%d", base.Fd(), i)
	}
	data := "lowerdir=" + strings.Join(names, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) >= maxMountData {
		return nil, fmt.Errorf("image has %d layers; before Linux 6.8 overlay takes at most about %d: "+
			"upgrade the kernel or flatten the image", len(lowers), (maxMountData-len(upper)-len(work)-30)/(len(names[0])+1))
	}
	// The layers must be attached when overlay resolves their names, at
	// mount. Overlay then holds private clones of them, and the detached
	// copy of the overlay holds its superblock: everything attached can
	// go as soon as the copy exists (the deferred detaches, the overlay
	// first).
	for i, l := range lowers {
		p := filepath.Join(mnt, strconv.Itoa(i))
		if err := attachLower(l, p); err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, detach(p)) }()
	}
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_NODEV, data); err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, detach(merged)) }()
	fd, err := unix.OpenTree(unix.AT_FDCWD, merged, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone overlay: %w", err)
	}
	return os.NewFile(uintptr(fd), "rootfs"), nil
}

// maxMountData is the most mount(2) copies of its options: a page.
const maxMountData = 4096

func attachLower(lower *os.File, p string) error {
	if err := os.MkdirAll(p, 0o700); err != nil {
		return err
	}
	if err := unix.MoveMount(int(lower.Fd()), "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach rootfs lower layer on %s: %w", p, err)
	}
	return nil
}

// detach unmounts what mountByPath attached at p.
func detach(p string) error {
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach %s: %w", p, err)
	}
	return nil
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
	for _, d := range []string{"upper", "work", "lower", "merged"} {
		errs = append(errs, os.RemoveAll(filepath.Join(spec.Dir, d)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up container %s: %w", spec.ID, err)
	}
	return nil
}
