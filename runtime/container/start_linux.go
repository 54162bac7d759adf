package container

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a started container. Its methods are safe for concurrent use,
// but only one goroutine may call Wait.
type Process struct {
	// Pid is the host PID of the container's first process.
	Pid int
	cmd *exec.Cmd
}

// Wait waits for the container's first process to exit, reaps it, and
// returns how it ended. An exit with a non-zero status is not an error.
func (p *Process) Wait() (*os.ProcessState, error) {
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = nil
	}
	return p.cmd.ProcessState, err
}

// Signal sends sig to the container's first process.
func (p *Process) Signal(sig os.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Start starts the container described by spec and returns once its command
// has been executed. The calling process becomes the container's parent: it
// must reap it with Wait, and its death kills the container (Pdeathsig).
// When Start fails nothing is left running; the overlay directories stay
// for Cleanup.
func Start(ctx context.Context, spec *Spec) (*Process, error) {
	if err := validate(spec); err != nil {
		return nil, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	p, err := start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	return p, nil
}

func validate(spec *Spec) error {
	switch {
	case len(spec.Args) == 0:
		return errors.New("no command")
	case len(spec.Lower) == 0 || spec.Dir == "":
		return errors.New("rootfs and container directory are required")
	case spec.UserNS != nil && spec.UserNS.Size == 0:
		return errors.New("empty user namespace mapping")
	}
	_, err := containerCaps(spec.CapAdd, spec.CapDrop)
	return err
}

// prepared is what the parent readies before the init stage runs.
type prepared struct {
	mounts detachedMounts
	// idmapped are the mounts of mounts that wait for the user namespace.
	idmapped    detachedMounts
	plan        []initMount
	upper, work string
}

func prepare(spec *Spec) (*prepared, error) {
	mounts, idmapped, plan, err := prepareMounts(spec)
	if err != nil {
		return nil, err
	}
	upper, work, err := prepareUpper(spec)
	if err != nil {
		mounts.Close()
		return nil, fmt.Errorf("prepare overlay: %w", err)
	}
	return &prepared{mounts: mounts, idmapped: idmapped, plan: plan, upper: upper, work: work}, nil
}

func start(ctx context.Context, spec *Spec) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prep, err := prepare(spec)
	if err != nil {
		return nil, err
	}
	defer prep.mounts.Close()
	conn, cmd, err := launchInit(spec)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := finishInit(ctx, spec, prep, conn, cmd.Process.Pid); err != nil {
		// The init stage either failed and is exiting, or still waits for
		// us: make sure it is gone before returning.
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return &Process{Pid: cmd.Process.Pid, cmd: cmd}, nil
}

// finishInit places the init stage (host PID pid) in its cgroups, hands it
// its rootfs, mounts and config, and waits until it has executed the
// container's command.
func finishInit(ctx context.Context, spec *Spec, prep *prepared, conn *net.UnixConn, pid int) error {
	if err := placeInitStage(spec, pid); err != nil {
		return err
	}
	userns, err := userNamespace(spec, pid)
	if err != nil {
		return err
	}
	if userns != nil {
		defer userns.Close()
		if err := prep.idmapped.idmap(userns); err != nil {
			return err
		}
	}
	rootfs, err := mountRootfs(spec, prep.upper, prep.work, userns)
	if err != nil {
		return err
	}
	defer rootfs.Close()
	cfg, err := processConfig(spec)
	if err != nil {
		return err
	}
	cfg.Mounts, cfg.UnshareCgroupNS = prep.plan, placesAfterStart(spec)
	cfg.ReadOnlyRootfs = spec.ReadOnlyRootfs
	if err := sendConfig(conn, &cfg, append([]int{int(rootfs.Fd())}, prep.mounts.fds()...)); err != nil {
		return err
	}
	return awaitExec(ctx, conn)
}

// processConfig is the part of the init stage's config that describes the
// container's process: its command, identity and privileges. An exec into
// the container (Exec) runs with the same, so every field that restricts
// the container's process belongs here, not in finishInit.
func processConfig(spec *Spec) (initConfig, error) {
	caps, err := containerCaps(spec.CapAdd, spec.CapDrop)
	if err != nil {
		return initConfig{}, err
	}
	return initConfig{
		Args: spec.Args, Env: spec.Env, Cwd: spec.Cwd,
		UID: spec.UID, GID: spec.GID, AdditionalGIDs: spec.AdditionalGIDs,
		NoNewPrivileges: spec.NoNewPrivileges, Caps: caps, Seccomp: spec.Seccomp,
	}, nil
}

// placesAfterStart reports whether the init stage joins its cgroups once
// started (placeInitStage) rather than at clone time: when the container
// has cgroups but no cgroup2 directory to clone into, because cgroup v1
// holds its limits and CLONE_INTO_CGROUP cannot reach v1 hierarchies.
func placesAfterStart(spec *Spec) bool {
	if spec.Cgroup == nil {
		return false
	}
	_, ok := spec.Cgroup.CgroupFD()
	return !ok
}

// placeInitStage moves the init stage (host PID pid) into the container's
// cgroups when placesAfterStart. The move mostly waits for an RCU grace
// period (the kernel's lock for cgroup migrations switching to its slow
// path, about 10 ms here), while the init stage, just executed, starts the
// Go runtime for about as long: the wait overlaps that start-up instead of
// delaying the fork.
//
// The order is safe:
//   - Nothing of the container runs before the move: the init stage has
//     no children and blocks reading its config, which is sent only after
//     this returns. Every process of the container descends from it, born
//     in its cgroups. pid is our unreaped child, so it names no other
//     process.
//   - The init stage creates its cgroup namespace only once it has its
//     config, so after the move: the namespace is rooted at the
//     container's cgroups and /proc/self/cgroup inside shows "/", no host
//     path. Created before the move, it would show the way up from the
//     shim's cgroups ("/../../peapod/...").
//   - Memory the init stage touched before the move, Go's start-up, stays
//     charged to the shim's cgroup: v1 does not move charges with a task.
//     That is a few MiB, freed at exec; all the container's own memory is
//     charged to its cgroup. So is the CPU time from the move on.
//
// On failure the caller kills the init stage, which may sit in some of the
// cgroups only.
func placeInitStage(spec *Spec, pid int) error {
	if !placesAfterStart(spec) {
		return nil
	}
	return spec.Cgroup.PlaceProcess(pid)
}

// userNamespace opens the user namespace of the init stage (host PID pid),
// or returns nil when the container has none. Idmapped mounts need a user
// namespace carrying the pod's mapping: this one, whose maps os/exec wrote
// before the child could run.
func userNamespace(spec *Spec, pid int) (*os.File, error) {
	if spec.UserNS == nil {
		return nil, nil
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("open container user namespace: %w", err)
	}
	return f, nil
}

// launchInit starts the init stage and returns the parent's end of its
// socket.
func launchInit(spec *Spec) (*net.UnixConn, *exec.Cmd, error) {
	exe, err := SealedExe()
	if err != nil {
		return nil, nil, err
	}
	parent, child, err := socketPair()
	if err != nil {
		return nil, nil, err
	}
	cmd := initCommand(spec, exe, child)
	err = startInNamespaces(cmd, spec)
	// The init stage holds its end now; ours must go, or the parent would
	// never see EOF when the init stage dies.
	child.Close()
	if err != nil {
		parent.Close()
		return nil, nil, err
	}
	return parent, cmd, nil
}

func socketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create init socket: %w", err)
	}
	pf := os.NewFile(uintptr(fds[0]), "init-parent")
	defer pf.Close()
	conn, err := net.FileConn(pf)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("create init socket: %w", err)
	}
	return conn.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "init-child"), nil
}

func initCommand(spec *Spec, exe, sock *os.File) *exec.Cmd {
	cmd := &exec.Cmd{
		Path:   "/proc/self/fd/" + strconv.Itoa(int(exe.Fd())),
		Args:   []string{"peapod", InitArg},
		Env:    []string{},
		Dir:    "/",
		Stdout: spec.Stdout,
		Stderr: spec.Stderr,
		// fd 3 in the init stage.
		ExtraFiles: []*os.File{sock},
	}
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Setsid:     true,
		// The shim is the container's supervisor: if it dies, so does the
		// container, rather than running unsupervised.
		Pdeathsig: syscall.SIGKILL,
	}
	if m := spec.UserNS; m != nil {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostID), Size: int(m.Size)}}
		attr.UidMappings, attr.GidMappings = idmap, idmap
		// Become root of the new namespace explicitly: without it the child
		// keeps host kuid 0 until exec, and Go skips setgroups, leaking the
		// shim's supplementary groups into the container. "allow" keeps
		// setgroups usable inside (su, nginx).
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		attr.GidMappingsEnableSetgroups = true
	}
	if spec.Cgroup != nil {
		if fd, ok := spec.Cgroup.CgroupFD(); ok {
			attr.UseCgroupFD, attr.CgroupFD = true, fd
		}
	}
	// A cgroup namespace is rooted at the cgroups of the task creating it.
	// An init stage moved once started creates its own when it is in place
	// (placeInitStage); any other gets it at clone time, rooted at the
	// cgroup CgroupFD names or, without cgroups, at the shim's.
	if !placesAfterStart(spec) {
		attr.Cloneflags |= syscall.CLONE_NEWCGROUP
	}
	cmd.SysProcAttr = attr
	return cmd
}

// startInNamespaces starts cmd from a locked thread that has joined the
// pod's network, IPC and UTS namespaces, so the child is born in them. The
// thread's cgroups are left alone: the child joins its own at clone time
// (CgroupFD) or once started (placeInitStage).
//
// The pod's network, IPC and UTS namespaces belong to the host user
// namespace, so they must be joined before the child's new user namespace
// exists: from inside it, setns into them fails with EPERM. The thread is
// put back afterwards and returned to Go, which never ends an unlocked
// thread: Pdeathsig fires when the thread that forked the child exits, so a
// thread left to die would kill the container. (The same holds for any
// goroutine of the caller that exits while locked to that thread: a shim
// must not do that.) If the thread cannot be put back, it stays locked and
// Go discards it; the child is killed with it, as a failed start wants.
func startInNamespaces(cmd *exec.Cmd, spec *Spec) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := startOnThread(cmd, spec)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func startOnThread(cmd *exec.Cmd, spec *Spec) (restored bool, err error) {
	joined, err := joinNamespaces(spec)
	if err != nil {
		return joined.restore() == nil, err
	}
	err = cmd.Start()
	if err != nil {
		err = fmt.Errorf("start init stage: %w", err)
	}
	if rerr := joined.restore(); rerr != nil {
		if err == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return false, errors.Join(err, rerr)
	}
	return true, err
}

// threadNamespaces remembers the namespaces a thread left.
type threadNamespaces []leftNamespace

type leftNamespace struct {
	orig *os.File
	flag int
}

func joinNamespaces(spec *Spec) (threadNamespaces, error) {
	var joined threadNamespaces
	for _, ns := range []struct {
		name, pin string
		flag      int
	}{
		{"net", spec.NetNS, unix.CLONE_NEWNET},
		{"ipc", spec.IPCNS, unix.CLONE_NEWIPC},
		{"uts", spec.UTSNS, unix.CLONE_NEWUTS},
	} {
		if ns.pin == "" {
			continue
		}
		orig, err := os.Open("/proc/thread-self/ns/" + ns.name)
		if err != nil {
			return joined, err
		}
		err = setnsPath(ns.pin, ns.flag)
		if err != nil {
			orig.Close()
			return joined, fmt.Errorf("join pod %s namespace: %w", ns.name, err)
		}
		joined = append(joined, leftNamespace{orig, ns.flag})
	}
	return joined, nil
}

func (t threadNamespaces) restore() error {
	var errs []error
	for _, ns := range t {
		if err := unix.Setns(int(ns.orig.Fd()), ns.flag); err != nil {
			errs = append(errs, fmt.Errorf("restore thread namespace: %w", err))
		}
		ns.orig.Close()
	}
	return errors.Join(errs...)
}

func setnsPath(path string, flag int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), flag)
}

// sendConfig sends an 8-byte length, the mounts as SCM_RIGHTS attached to
// it, then the JSON config.
func sendConfig(conn *net.UnixConn, cfg *initConfig, fds []int) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode init config: %w", err)
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(data)))
	if _, _, err := conn.WriteMsgUnix(hdr[:], unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("send init config: %w", err)
	}
	if _, err := conn.Write(data); err != nil {
		return fmt.Errorf("send init config: %w", err)
	}
	return nil
}

// awaitExec waits for the init stage's verdict: EOF with nothing written
// means exec succeeded (the socket is close-on-exec); anything else is the
// init stage's error.
func awaitExec(ctx context.Context, conn *net.UnixConn) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	var msg bytes.Buffer
	_, err := io.Copy(&msg, conn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("wait for init stage: %w", err)
	}
	if msg.Len() > 0 {
		return &InitError{Msg: msg.String()}
	}
	return nil
}

// InitError is a failure reported by the init stage, inside the container:
// a bad working directory, user or mount, or a command that cannot be
// executed. It is the user's to fix.
type InitError struct {
	Msg string
}

func (e *InitError) Error() string { return e.Msg }
