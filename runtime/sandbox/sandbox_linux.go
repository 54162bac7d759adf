package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nsKind is one of the namespaces a sandbox owns.
type nsKind struct {
	name string // as in /proc/thread-self/ns/<name>
	flag int    // CLONE_NEW*
}

var (
	nsNet = nsKind{"net", unix.CLONE_NEWNET}
	nsIPC = nsKind{"ipc", unix.CLONE_NEWIPC}
	nsUTS = nsKind{"uts", unix.CLONE_NEWUTS}
)

// Create makes the pod sandbox described by cfg, or completes one that an
// earlier, interrupted call left half-made: every step keeps what is already
// in place. When it fails, what it made stays, for a retry to complete or
// Remove to take away. The caller must not run two Create or Remove calls
// for one directory at once.
func Create(ctx context.Context, cfg Config) (*Sandbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("create sandbox: directory %q is not absolute", cfg.Dir)
	}
	if cfg.Hostname == "" {
		return nil, fmt.Errorf("create sandbox in %s: empty hostname", cfg.Dir)
	}
	s := Layout(cfg.Dir, cfg.HostNetwork)
	for _, d := range []string{filepath.Join(s.Dir, "ns"), filepath.Join(s.Dir, "etc"), s.Shm, s.Mqueue, s.Sys} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create sandbox: %w", err)
		}
	}
	if err := s.mountShm(cfg.ShmSize); err != nil {
		return nil, err
	}
	if err := onPrivateThread(func() error { return s.setUpNamespaces(cfg) }); err != nil {
		return nil, fmt.Errorf("create sandbox namespaces in %s: %w", s.Dir, err)
	}
	if err := s.writeFiles(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sandbox) mountShm(size int64) error {
	if size == 0 {
		size = DefaultShmSize
	}
	mounted, err := isMountPoint(s.Shm)
	if err != nil || mounted {
		return err
	}
	data := "mode=1777,size=" + strconv.FormatInt(size, 10)
	if err := unix.Mount("shm", s.Shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mount pod /dev/shm on %s: %w", s.Shm, err)
	}
	return nil
}

// setUpNamespaces runs on a thread of its own. It enters each pod namespace
// (making it, or joining its pin) and, while there, makes the mounts that the
// kernel ties to the mounter's namespace: mqueue to the IPC namespace and
// sysfs to the network namespace, and writes the pod's sysctls. Container
// root can do none of it itself, because the init user namespace owns these
// namespaces.
func (s *Sandbox) setUpNamespaces(cfg Config) error {
	if err := enterOrCreate(nsIPC, s.IPCNS, nil); err != nil {
		return err
	}
	if s.UTSNS != "" {
		if err := enterOrCreate(nsUTS, s.UTSNS, func() error { return unix.Sethostname([]byte(cfg.Hostname)) }); err != nil {
			return err
		}
	}
	if s.NetNS != "" {
		if err := enterOrCreate(nsNet, s.NetNS, setLoopbackUp); err != nil {
			return err
		}
	}
	if err := writeSysctls(cfg.Sysctls, cfg.HostNetwork); err != nil {
		return err
	}
	if err := mountOnce("mqueue", s.Mqueue, "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
		return err
	}
	return mountOnce("sysfs", s.Sys, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// enterOrCreate moves the calling thread into the namespace pinned at pin,
// or, when there is no pin yet, into a new namespace that it then sets up
// with configure (unless nil) and pins. configure runs before the pin
// exists, so a crash between the two leaves no pin of a half-configured
// namespace, and a retry redoes both.
func enterOrCreate(kind nsKind, pin string, configure func() error) error {
	pinned, err := isMountPoint(pin)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if pinned {
		return setnsPath(pin, kind)
	}
	if err := unix.Unshare(kind.flag); err != nil {
		return fmt.Errorf("unshare %s namespace: %w", kind.name, err)
	}
	if configure != nil {
		if err := configure(); err != nil {
			return err
		}
	}
	return pinNamespace(kind, pin)
}

// pinNamespace keeps the calling thread's namespace alive after the thread
// leaves it by bind-mounting its nsfs file onto pin.
func pinNamespace(kind nsKind, pin string) error {
	f, err := os.OpenFile(pin, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pin %s namespace: %w", kind.name, err)
	}
	if f != nil {
		f.Close()
	}
	if err := unix.Mount("/proc/thread-self/ns/"+kind.name, pin, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin %s namespace on %s: %w", kind.name, pin, err)
	}
	return nil
}

func setLoopbackUp() error {
	// The handle's socket is opened in the calling thread's (new) network
	// namespace, so no further setns is needed.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in pod network namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in pod network namespace: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in pod network namespace: %w", err)
	}
	return nil
}

func mountOnce(source, target, fstype string, flags uintptr) error {
	mounted, err := isMountPoint(target)
	if err != nil || mounted {
		return err
	}
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

func (s *Sandbox) writeFiles(cfg Config) error {
	if err := writeInPlace(s.Hostname, []byte(cfg.Hostname+"\n")); err != nil {
		return err
	}
	if err := writeInPlace(s.ResolvConf, cfg.ResolvConf); err != nil {
		return err
	}
	if cfg.HostNetwork {
		return writeHostNetworkHosts(s.Hosts, cfg.HostHosts, cfg.Hostname)
	}
	if _, err := os.Stat(s.Hosts); err == nil {
		// Keep the pod IPs an earlier WriteHosts recorded.
		return nil
	}
	return WriteHosts(s.Dir, cfg.Hostname, nil)
}

// writeHostNetworkHosts copies the host's hosts file for a hostNetwork pod.
// A copy made when the sandbox is created, not a bind of the live file, as
// kubelet does: the container cannot write the host's file through it. A
// host without one (a minimal image) gets the file of any other pod.
func writeHostNetworkHosts(path, hostHosts, hostname string) error {
	if hostHosts == "" {
		hostHosts = "/etc/hosts"
	}
	host, err := os.ReadFile(hostHosts)
	if errors.Is(err, fs.ErrNotExist) {
		return writeInPlace(path, hostsFile(hostname, nil))
	}
	if err != nil {
		return fmt.Errorf("copy the host's hosts file for a hostNetwork pod: %w", err)
	}
	return writeInPlace(path, hostNetworkHostsFile(host))
}

// Remove unmounts and deletes everything Create made under dir, then dir
// itself if nothing else is left in it. Removing a missing or partly made
// sandbox is not an error. Nothing is deleted beneath a mount that failed to
// come off, so a failed unmount can never make Remove delete the contents of
// a mounted file system.
func Remove(dir string) error {
	s := Layout(dir, false)
	mounts := []string{s.Sys, s.Mqueue, s.Shm, s.NetNS, s.IPCNS, s.UTSNS}
	var errs []error
	for _, m := range mounts {
		errs = append(errs, unmountAll(m))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", dir, err)
	}
	for _, p := range append(mounts, s.Hostname, s.Hosts, s.ResolvConf, filepath.Join(dir, "etc"), filepath.Join(dir, "ns")) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", dir, err)
	}
	return nil
}

// unmountAll takes every mount stacked on path off. MNT_DETACH lets a pin
// that someone still holds open (a container start in flight) go at once;
// the namespace itself lives on until that last reference is dropped.
func unmountAll(path string) error {
	for {
		mounted, err := isMountPoint(path)
		if errors.Is(err, os.ErrNotExist) || (err == nil && !mounted) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
}

// isMountPoint reports whether path is the root of a mount.
func isMountPoint(path string) (bool, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, 0, &st)
	if err != nil {
		return false, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("statx %s: kernel does not report mount roots (needs 5.8+)", path)
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// onPrivateThread runs fn on a locked OS thread of its own and then puts the
// thread back into the network, IPC and UTS namespaces it started in. If
// that fails the thread stays locked, so Go destroys it when the goroutine
// ends instead of reusing a thread that sits in a pod's namespaces.
func onPrivateThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := openThreadNamespaces()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer closeAll(orig)
		ferr := fn()
		if rerr := restoreNamespaces(orig); rerr != nil {
			errc <- errors.Join(ferr, rerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

var threadKinds = []nsKind{nsNet, nsIPC, nsUTS}

func openThreadNamespaces() ([]*os.File, error) {
	var files []*os.File
	for _, k := range threadKinds {
		f, err := os.Open("/proc/thread-self/ns/" + k.name)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func restoreNamespaces(orig []*os.File) error {
	for i, k := range threadKinds {
		if err := unix.Setns(int(orig[i].Fd()), k.flag); err != nil {
			return fmt.Errorf("restore %s namespace: %w", k.name, err)
		}
	}
	return nil
}

func setnsPath(path string, kind nsKind) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), kind.flag); err != nil {
		return fmt.Errorf("join %s namespace %s: %w", kind.name, path, err)
	}
	return nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
