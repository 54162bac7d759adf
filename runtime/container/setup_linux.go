package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// devices are bound from the host's /dev: container root may not mknod.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// devLinks are the symlinks of a container's /dev.
var devLinks = [][2]string{
	{"ptmx", "pts/ptmx"},
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// maskedPaths hide kernel information and knobs that a container has no
// business reading, as runc's default spec does.
var maskedPaths = []string{
	"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi", "/sys/firmware",
}

// readOnlyPaths are left visible but read-only.
var readOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// setUpRootfs builds the container's mount tree on the rootfs (mounts[0])
// and pivots into it.
//
// Every path inside the rootfs is looked up from the rootfs descriptor with
// RESOLVE_IN_ROOT, so a symlink in the image (say /etc/hosts -> /etc/shadow)
// resolves inside the image and never to a host file, and every mount
// targets the descriptor that lookup returned, not a path that could be
// swapped in between.
func setUpRootfs(cfg *initConfig, mounts []*os.File) error {
	root := mounts[0]
	// Attach the detached overlay on top of our (host) root. Absolute paths
	// still resolve in the host tree until pivot_root, which the steps
	// below use to reach host /dev nodes; paths from root see the overlay.
	if err := unix.MoveMount(int(root.Fd()), "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach rootfs: %w", err)
	}
	if err := mountDev(root); err != nil {
		return err
	}
	// proc must be mounted while the host's /proc is still in this mount
	// namespace: the kernel lets a user namespace mount proc only where a
	// fully visible proc already exists (mount_too_revealing).
	if err := mountProc(root); err != nil {
		return err
	}
	for _, m := range cfg.Mounts {
		if err := attachMount(root, m, mounts); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	// Masks come after the mounts, so that they cover a /sys the pod mounted.
	if err := maskPaths(root); err != nil {
		return err
	}
	if cfg.ReadOnlyRootfs {
		if err := readOnlyRoot(root); err != nil {
			return err
		}
	}
	return pivotRoot(root)
}

func mountDev(root *os.File) error {
	dev, err := ensureDir(root, "/dev")
	if err != nil {
		return err
	}
	err = mountAt("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_STRICTATIME, "mode=755,size=65536k")
	dev.Close()
	if err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, name := range devices {
		if err := bindDevice(root, name); err != nil {
			return err
		}
	}
	pts, err := ensureDir(root, "/dev/pts")
	if err != nil {
		return err
	}
	defer pts.Close()
	// A private devpts instance: the container sees and allocates only its
	// own ptys. gid 5 is tty in the images' /etc/group convention.
	if err := mountAt("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return fmt.Errorf("mount /dev/pts: %w", err)
	}
	return linkDev(root)
}

// bindDevice binds the host's /dev/name onto a file in the container's /dev.
// The tmpfs is mounted in the container's user namespace, where the kernel
// ignores device nodes (SB_I_NODEV); the bound node keeps devtmpfs's rules.
func bindDevice(root *os.File, name string) error {
	target, err := ensureFile(root, "/dev/"+name)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := mountAt("/dev/"+name, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /dev/%s: %w", name, err)
	}
	return nil
}

func linkDev(root *os.File) error {
	dev, err := openIn(root, "/dev", unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer dev.Close()
	for _, l := range devLinks {
		if err := unix.Symlinkat(l[1], int(dev.Fd()), l[0]); err != nil {
			return fmt.Errorf("link /dev/%s: %w", l[0], err)
		}
	}
	return nil
}

func mountProc(root *os.File) error {
	proc, err := ensureDir(root, "/proc")
	if err != nil {
		return err
	}
	defer proc.Close()
	if err := mountAt("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

func attachMount(root *os.File, m initMount, mounts []*os.File) error {
	var (
		target *os.File
		err    error
	)
	if m.Dir {
		target, err = ensureDir(root, m.Destination)
	} else {
		target, err = ensureFile(root, m.Destination)
	}
	if err != nil {
		return err
	}
	defer target.Close()
	if m.FD < 0 {
		var flags uintptr = unix.MS_NOSUID | unix.MS_NODEV
		if m.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		return mountAt("tmpfs", target, "tmpfs", flags, m.Data)
	}
	if m.FD >= len(mounts) {
		return fmt.Errorf("mount %d of %d was not received", m.FD, len(mounts))
	}
	return unix.MoveMount(int(mounts[m.FD].Fd()), "", int(target.Fd()), "",
		unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// maskPaths hides maskedPaths (a file under /dev/null, a directory under an
// empty read-only tmpfs) and makes readOnlyPaths read-only. Paths the
// kernel does not have are skipped.
func maskPaths(root *os.File) error {
	for _, p := range maskedPaths {
		if err := maskPath(root, p); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readOnlyPaths {
		if err := readOnlyPath(root, p); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

func maskPath(root *os.File, p string) error {
	f, err := openIn(root, p, unix.O_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return mountAt("tmpfs", f, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
	}
	return mountAt("/dev/null", f, "", unix.MS_BIND, "")
}

// readOnlyPath covers p with a read-only clone of itself, made detached so
// the attributes are set before anything can see it writable.
func readOnlyPath(root *os.File, p string) error {
	f, err := openIn(root, p, unix.O_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fd, err := unix.OpenTree(int(f.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return err
	}
	return unix.MoveMount(fd, "", int(f.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// pivotRoot makes the rootfs our root and drops the host's tree.
//
// pivot_root(".", ".") stacks the old root on top of the new one, where
// umount2(".", MNT_DETACH) takes it, with every host mount under it, out of
// this namespace. The rootfs mount came in detached, not inherited from the
// host, so it is not MNT_LOCKED and the kernel accepts it as a new root.
func pivotRoot(root *os.File) error {
	if err := unix.Fchdir(int(root.Fd())); err != nil {
		return fmt.Errorf("enter rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	// Leave no reference to the host tree as our working directory.
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter new root: %w", err)
	}
	return nil
}

// openIn opens p inside root as an O_PATH descriptor, resolving every
// symlink as if root were "/".
func openIn(root *os.File, p string, flags uint64) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | flags,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(root.Fd()), p, how)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// ensureDir opens directory p inside root, creating it and its missing
// parents.
func ensureDir(root *os.File, p string) (*os.File, error) {
	p = path.Clean("/" + p)
	f, err := openIn(root, p, unix.O_DIRECTORY)
	if !errors.Is(err, unix.ENOENT) || p == "/" {
		return f, err
	}
	parent, err := ensureDir(root, path.Dir(p))
	if err != nil {
		return nil, err
	}
	err = unix.Mkdirat(int(parent.Fd()), path.Base(p), 0o755)
	parent.Close()
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "mkdir", Path: p, Err: err}
	}
	return openIn(root, p, unix.O_DIRECTORY)
}

// ensureFile opens file p inside root, creating it (empty) and its missing
// parents, as a mount point for a file bind mount.
func ensureFile(root *os.File, p string) (*os.File, error) {
	p = path.Clean("/" + p)
	f, err := openIn(root, p, 0)
	if !errors.Is(err, unix.ENOENT) {
		return f, err
	}
	parent, err := ensureDir(root, path.Dir(p))
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(int(parent.Fd()), path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	parent.Close()
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "create", Path: p, Err: err}
	}
	if err == nil {
		unix.Close(fd)
	}
	return openIn(root, p, 0)
}

// mountAt mounts onto the file or directory target refers to, through its
// /proc/self/fd magic link (the host's /proc, still reachable before
// pivot_root), so the mount lands on exactly what was looked up.
func mountAt(source string, target *os.File, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, fdPath(target), fstype, flags, data)
}

func fdPath(f *os.File) string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
}

// lookPath finds file in the PATH of env, as a shell would.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: %w", file, errNotFound)
}
