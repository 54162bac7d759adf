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
	detach, err := setLowers(fs, lowers, spec.Dir)
	if err != nil {
		return nil, err
	}
	err = createOverlay(fs, upper, work)
	if derr := detach(); err == nil {
		err = derr
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

// setLowers hands the lower layers (base first) to overlay. Linux 6.8+
// takes the detached mounts themselves ("lowerdir+"); older kernels reject
// the key (EINVAL on some, EOPNOTSUPP on 6.1, where FSCONFIG_SET_FD is not
// supported for overlay's lowerdir at all) and need paths, so the mounts
// are attached under dir/lower until overlay has taken its own private
// clones of them (at FSCONFIG_CMD_CREATE on kernels that parse options
// late). The caller runs detach once the overlay is created.
//
// Every "lowerdir+" appends a layer BELOW the ones given before (as in
// lowerdir=top:...:base, the first is the topmost lower layer), so the
// layers go in from the top down; TestLayers fails if they are reversed.
func setLowers(fs int, lowers []*os.File, dir string) (detach func() error, err error) {
	for i := len(lowers) - 1; i >= 0; i-- {
		err = unix.FsconfigSetFd(fs, "lowerdir+", int(lowers[i].Fd()))
		if err == nil {
			continue
		}
		if i == len(lowers)-1 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
			return setLowersByPath(fs, lowers, filepath.Join(dir, "lower"))
		}
		return nil, fmt.Errorf("overlay lowerdir+ %s: %w", lowers[i].Name(), err)
	}
	return func() error { return nil }, nil
}

// setLowersByPath attaches the layers at mnt/0 (base) .. mnt/N-1 (top) and
// names them in one "lowerdir=top:...:base" option. fsconfig takes at most
// 255 bytes for it, so the layers are named through a descriptor of mnt
// (/proc/self/fd/D/i, about 20 bytes a layer) rather than by their long
// paths; an image with more layers than fit is refused with the reason.
// Overlay resolves the names at create, while the descriptor is open.
func setLowersByPath(fs int, lowers []*os.File, mnt string) (detach func() error, err error) {
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, err
	}
	base, err := os.OpenFile(mnt, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(lowers))
	for i := range lowers {
		names[len(lowers)-1-i] = fmt.Sprintf("/proc/self/fd/%d/%d", base.Fd(), i)
	}
	option := strings.Join(names, ":")
	if len(option) > maxFsconfigString {
		base.Close()
		return nil, fmt.Errorf("image has %d layers; before Linux 6.8 overlay takes only about %d through fsconfig: "+
			"upgrade the kernel or flatten the image", len(lowers), maxFsconfigString/len(names[0]))
	}
	var attached []string
	detach = func() error {
		var errs []error
		for _, p := range attached {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("detach rootfs lower layer: %w", err))
			}
		}
		return errors.Join(append(errs, base.Close())...)
	}
	for i, l := range lowers {
		p := filepath.Join(mnt, strconv.Itoa(i))
		if err := attachLower(l, p); err != nil {
			return nil, errors.Join(err, detach())
		}
		attached = append(attached, p)
	}
	if err := unix.FsconfigSetString(fs, "lowerdir", option); err != nil {
		return nil, errors.Join(fmt.Errorf("overlay lowerdir %s: %w", mnt, err), detach())
	}
	return detach, nil
}

// maxFsconfigString is the longest string value fsconfig(2) accepts.
const maxFsconfigString = 255

func attachLower(lower *os.File, p string) error {
	if err := os.MkdirAll(p, 0o700); err != nil {
		return err
	}
	if err := unix.MoveMount(int(lower.Fd()), "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach rootfs lower layer on %s: %w", p, err)
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
