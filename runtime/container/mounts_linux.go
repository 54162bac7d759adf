package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// maxMounts keeps the rootfs and every mount within one SCM_RIGHTS message
// (the kernel's SCM_MAX_FD is 253).
const maxMounts = 250

// detachedMounts are mount fds made by the parent for the init stage.
type detachedMounts []*os.File

// idmap applies the user namespace's mapping to every mount in d (and the
// mounts under it). The kernel allows it only on a mount that has never
// been attached, which these are until the init stage attaches them.
func (d detachedMounts) idmap(userns *os.File) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	for _, f := range d {
		if err := unix.MountSetattr(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("idmap mount of %s: %w", f.Name(), err)
		}
	}
	return nil
}

func (d detachedMounts) Close() {
	for _, f := range d {
		f.Close()
	}
}

func (d detachedMounts) fds() []int {
	fds := make([]int, len(d))
	for i, f := range d {
		fds[i] = int(f.Fd())
	}
	return fds
}

// sortedMounts orders mounts parents first, keeping the given order among
// equals, as containerd does.
func sortedMounts(mounts []Mount) []Mount {
	out := slices.Clone(mounts)
	slices.SortStableFunc(out, func(a, b Mount) int {
		return depth(a.Destination) - depth(b.Destination)
	})
	return out
}

func depth(p string) int {
	return strings.Count(path.Clean("/"+p), "/")
}

// prepareMounts opens every bind source of spec as a detached mount and
// returns them with the init stage's plan. The parent does it because the
// init stage, root only in the container's user namespace, has no
// privilege over host directories and cannot even look up a path under a
// 0700 one (the pod state directory); and a detached mount is the one kind
// of mount from outside its mount namespace that the kernel lets it attach.
// The mounts that asked for IDMap are also returned in idmapped, for the
// parent to map once the container's user namespace exists.
func prepareMounts(spec *Spec) (fds, idmapped detachedMounts, plan []initMount, err error) {
	if len(spec.Mounts) > maxMounts {
		return nil, nil, nil, fmt.Errorf("%d mounts: at most %d are supported", len(spec.Mounts), maxMounts)
	}
	for _, m := range sortedMounts(spec.Mounts) {
		if m.IDMap && spec.UserNS == nil {
			fds.Close()
			return nil, nil, nil, fmt.Errorf("mount %s: IDMap needs a user namespace", m.Destination)
		}
		im, f, err := prepareMount(m)
		if err != nil {
			fds.Close()
			return nil, nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if f != nil {
			// Index 0 is the rootfs, sent first.
			im.FD = len(fds) + 1
			fds = append(fds, f)
			if m.IDMap {
				idmapped = append(idmapped, f)
			}
		}
		plan = append(plan, im)
	}
	return fds, idmapped, plan, nil
}

func prepareMount(m Mount) (initMount, *os.File, error) {
	if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
		return initMount{}, nil, errors.New("destination must be an absolute path below /")
	}
	im := initMount{Destination: path.Clean(m.Destination), FD: -1, Dir: true, Data: m.Data, ReadOnly: m.ReadOnly}
	if im.Destination == "/sys" {
		// sysfs holds host-wide knobs; a container never writes it.
		m.ReadOnly, im.ReadOnly = true, true
	}
	switch m.Type {
	case "tmpfs":
		return im, nil, nil
	case "", "bind":
	default:
		return initMount{}, nil, fmt.Errorf("mount type %q: want bind or tmpfs", m.Type)
	}
	f, dir, err := openBindSource(m)
	if err != nil {
		return initMount{}, nil, err
	}
	im.Dir = dir
	return im, f, nil
}

// openBindSource clones the source tree of m (recursively, as a kubelet
// bind does) into a detached mount, read-only when asked.
func openBindSource(m Mount) (*os.File, bool, error) {
	src, err := openSource(m.Source, m.SubPath)
	if err != nil {
		return nil, false, err
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return nil, false, fmt.Errorf("stat %s: %w", src.Name(), err)
	}
	fd, err := unix.OpenTree(int(src.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return nil, false, fmt.Errorf("clone %s: %w", src.Name(), err)
	}
	tree := os.NewFile(uintptr(fd), src.Name())
	if m.ReadOnly {
		// Recursive, so a mount under the source cannot stay writable.
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			tree.Close()
			return nil, false, fmt.Errorf("make %s read-only: %w", src.Name(), err)
		}
	}
	return tree, st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// openSource opens source, or subPath beneath it, as an O_PATH descriptor.
//
// subPath comes from the pod and the volume's content from its containers,
// which may have planted symlinks: RESOLVE_BENEATH makes the kernel refuse,
// atomically with the lookup, any step that would leave the volume ("..",
// an absolute symlink, a symlink pointing outside), so a later bind of the
// descriptor cannot land outside it (the Kubernetes subPath CVE class).
// Symlinks that stay inside the volume work, as they do with kubelet.
func openSource(source, subPath string) (*os.File, error) {
	root, err := os.OpenFile(source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if subPath == "" {
		return root, nil
	}
	defer root.Close()
	if filepath.IsAbs(subPath) {
		return nil, fmt.Errorf("subPath %q is absolute", subPath)
	}
	f, err := openBeneath(root, subPath)
	if errors.Is(err, unix.ENOENT) {
		if err := mkdirBeneath(root, subPath); err != nil {
			return nil, err
		}
		f, err = openBeneath(root, subPath)
	}
	if err != nil {
		return nil, fmt.Errorf("subPath %q of %s: %w", subPath, source, err)
	}
	return f, nil
}

func openBeneath(root *os.File, rel string) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(root.Fd()), rel, how)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(root.Name(), rel)), nil
}

// mkdirBeneath creates the missing directories of rel under root, each
// looked up beneath root so a symlink swapped in meanwhile cannot redirect
// the creation outside.
func mkdirBeneath(root *os.File, rel string) error {
	parts := strings.Split(filepath.Clean(rel), "/")
	for i := range parts {
		parent := filepath.Join(parts[:i]...)
		if parent == "" {
			parent = "."
		}
		dir, err := openBeneath(root, parent)
		if err != nil {
			return fmt.Errorf("subPath %q: %w", rel, err)
		}
		err = unix.Mkdirat(int(dir.Fd()), parts[i], 0o755)
		dir.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("subPath %q: create %s: %w", rel, filepath.Join(parts[:i+1]...), err)
		}
	}
	return nil
}
