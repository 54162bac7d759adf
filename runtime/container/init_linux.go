package container

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// initSockFD is where the init stage finds its socket (ExtraFiles[0]).
const initSockFD = 3

// RunInit is the init stage, run as `peapod internal-init` inside the
// container's new namespaces. It never returns: it execs the container's
// command, or reports why it could not to the parent and exits.
func RunInit() {
	// Capabilities, the bounding set and namespaces are per thread:
	// everything from here to exec must happen on the thread that execs.
	// Only that thread's namespaces survive execve (the kernel ends the
	// others), so the cgroup namespace unshared below is the container's.
	runtime.LockOSThread()
	sock := os.NewFile(initSockFD, "init-sock")
	err := runInit(sock)
	fmt.Fprint(sock, err.Error())
	os.Exit(1)
}

func runInit(sock *os.File) error {
	// Before anything else is mounted: the mount namespace is a copy of the
	// host's, and a mount under a mount still shared with the host would
	// propagate back out.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	cfg, mounts, err := receiveConfig(sock)
	if err != nil {
		return err
	}
	// The parent sends the config only once it has moved us into our
	// cgroups: from now on a new cgroup namespace is rooted there, and the
	// container sees "/" as its cgroup, not the way up from the shim's.
	// CAP_SYS_ADMIN in our user namespace (or the host's, for hostUsers
	// pods) allows it.
	if cfg.UnshareCgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("create cgroup namespace: %w", err)
		}
	}
	if err := setUpRootfs(cfg, mounts); err != nil {
		return err
	}
	for _, m := range mounts {
		m.Close()
	}
	return execCommand(cfg, sock)
}

func receiveConfig(sock *os.File) (*initConfig, []*os.File, error) {
	var hdr [8]byte
	oob := make([]byte, unix.CmsgSpace((maxMounts+1)*4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), hdr[:], oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("receive init config: %w", err)
	}
	mounts, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(sock, hdr[n:]); err != nil {
		return nil, nil, fmt.Errorf("receive init config: %w", err)
	}
	data := make([]byte, binary.LittleEndian.Uint64(hdr[:]))
	if _, err := io.ReadFull(sock, data); err != nil {
		return nil, nil, fmt.Errorf("receive init config: %w", err)
	}
	var cfg initConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, nil, fmt.Errorf("decode init config: %w", err)
	}
	return &cfg, mounts, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("receive init mounts: %w", err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("receive init mounts: got %d control messages, want 1", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, fmt.Errorf("receive init mounts: %w", err)
	}
	if len(fds) == 0 {
		return nil, errors.New("receive init mounts: no rootfs")
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "mount-"+strconv.Itoa(i))
	}
	return files, nil
}

// execCommand becomes the container's user and executes its command.
func execCommand(cfg *initConfig, sock *os.File) error {
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// Created as container root, entered as the user: as runc does.
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return fmt.Errorf("create working directory: %w", err)
	}
	if !cfg.NoNewPrivileges {
		// While CAP_SYS_ADMIN is still ours: see installSeccomp.
		if err := installSeccomp(cfg); err != nil {
			return err
		}
	}
	if err := dropPrivileges(cfg); err != nil {
		return err
	}
	if err := rearmDeathSignal(sock); err != nil {
		return err
	}
	if err := os.Chdir(cwd); err != nil {
		return fmt.Errorf("enter working directory: %w", err)
	}
	path, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		return &commandError{err: err}
	}
	// Last before exec, after the identity changes it would not restrict:
	// from here on no execve can gain privileges (setuid bits, file caps).
	if cfg.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	// Every descriptor above stdio becomes close-on-exec, so none of ours
	// (the socket, Go's epoll, anything inherited) reaches the command
	// (CVE-2024-21626). The socket stays usable until exec succeeds, and
	// its closing then is the parent's signal that it did.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	if cfg.NoNewPrivileges {
		// As late as can be: see installSeccomp.
		if err := installSeccomp(cfg); err != nil {
			return err
		}
	}
	err = unix.Exec(path, cfg.Args, cfg.Env)
	return &commandError{name: cfg.Args[0], err: err}
}

// rearmDeathSignal sets the parent-death signal again: the kernel clears it
// when the effective user or group changes, as it just did for a runAsUser
// container. The parent may have died in between, which getppid cannot tell
// from inside a new PID namespace (it reports 0); the parent holding its end
// of the socket until exec can: a hang-up means it is gone.
func rearmDeathSignal(sock *os.File) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	fds := []unix.PollFd{{Fd: int32(sock.Fd()), Events: unix.POLLRDHUP}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("check parent: %w", err)
		}
	}
	if fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0 {
		return errors.New("parent exited during container start")
	}
	return nil
}
