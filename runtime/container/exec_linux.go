package container

// Exec runs a further process in a running container, as `kubectl exec`
// and exec probes and hooks do. It must land where the container's own
// processes are: in the container's user, mount, PID, network, IPC, UTS and
// cgroup namespaces, in its cgroups, with its identity, capabilities,
// no_new_privs and seccomp filter.
//
// Why nsenter. A Go process cannot join a user or mount namespace: setns
// returns EINVAL in a multi-threaded process (KERNEL-NOTES Q1), and the
// Go runtime has threads before main runs. runc solves this with a C
// constructor (nsexec) that runs before the Go runtime; peapod is built
// with CGO_ENABLED=0. The join therefore happens in util-linux's nsenter,
// which is single-threaded, Essential on Debian and present on every
// distribution. It opens the target's namespaces, joins them (the pod's
// network, IPC and UTS ones first, which the host's user namespace owns,
// then the user namespace), chroots into the target's root and forks,
// because joining a PID namespace only places children in it. Its child
// execs the exec stage: our own binary, from the sealed memfd the shim
// already holds for init stages (CVE-2019-5736: nothing of the host's
// binary is reachable from inside). The exec stage runs the same final
// steps as a container's init stage (execCommand: identity, capabilities,
// no_new_privs, close-on-exec of every inherited descriptor, working
// directory, exec) on the same process config (processConfig), so an
// exec'd process can never be given more than the container has: a
// restriction added to those two places, such as a seccomp filter
// installed in execCommand, applies to both.
//
// The alternative, a raw-syscall child forked from a locked Go thread that
// joins and execs without the Go runtime (what the syscall package does
// between fork and exec), would save nsenter's exec and the exec stage's
// start-up, but needs the runtime's private fork hooks; nsenter keeps the
// privileged part in a well-known program.
//
// What nsenter does on our behalf, and why it is safe:
//   - It joins namespaces, and takes a root and working directory, that
//     the caller opened from /proc/<init> and checked through a pidfd to
//     be the container's (openTarget): it is never given a PID that may
//     have been reused.
//   - It joins every namespace before the chroot and the fork, from the
//     host's root; the user namespace is joined last, so host-owned pod
//     namespaces are still reachable.
//   - --root and --wd are the container init's root and working
//     directory, so the process never holds a host directory as root or
//     cwd once inside (runc CVE-2024-21626); the exec stage then enters
//     the container's working directory by its path inside the container.
//   - Without --preserve-credentials, its child becomes root of the
//     container's user namespace (setgroups(0), setgid(0), setuid(0)), as
//     the init stage is, before it execs: it never acts inside the
//     container as host root.
//   - The exec stage it execs cannot be read by container root (exeMode),
//     so the kernel makes it non-dumpable from its first instruction: no
//     process of the container can ptrace it or open its descriptors
//     before it execs the command (runc CVE-2016-9962).
//
// nsenter itself stays outside the container's PID namespace, waiting for
// its child and exiting with its status (or dying of the same signal), so
// the shim, its parent, reads the command's exit status from it.

import (
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

// ExecArg is os.Args[1] of the exec stage. The program's main must call
// RunExec, before anything else, when it sees it.
const ExecArg = "internal-exec"

// Descriptors of the exec stage: its socket to the parent, and the sealed
// binary nsenter executes it from.
const (
	execSockFD = 3
	execExeFD  = 4
)

// Exit statuses a shell gives a command it cannot run; Exec's process
// exits with them when the command is missing or not executable.
const (
	ExitNotExecutable = 126
	ExitNotFound      = 127
)

// ExecCgroup puts an exec'd process into the container's cgroups from its
// birth: a process forked by the command is then in them too, and a kill
// of the container's cgroup reaches it.
type ExecCgroup interface {
	// CgroupFD is CgroupPlacer's: a cgroup2 directory to clone into.
	CgroupFD() (fd int, ok bool)
	// EnterThread moves the calling thread, which must be locked to its
	// goroutine, into the container's cgroups where CgroupFD cannot place
	// the child (cgroup v1); leave, never nil, moves it back, also after
	// a failure part way. Moving one's own thread
	// skips the kernel's global migration lock that moving a process by
	// PID takes, which waits for an RCU grace period (6-18 ms measured).
	EnterThread() (leave func() error, err error)
}

// ExecOptions describes a process to run in a running container.
type ExecOptions struct {
	// Args is the command; Args[0] is looked up in the container's PATH.
	Args []string
	// TTY gives the process a terminal from the container's own devpts
	// instance, as its stdin, stdout and stderr and controlling terminal;
	// ExecProcess.Console is its master side. Stdin, Stdout and Stderr are
	// then unused.
	TTY bool
	// Width and Height are the terminal's initial size, when TTY.
	Width, Height uint16
	// Stdin, Stdout and Stderr become the process's descriptors 0 to 2;
	// nil means /dev/null. Pass pipes, never a host file or terminal: the
	// process, and anything of the container that reaches it, can use
	// them.
	Stdin, Stdout, Stderr *os.File
	// Cgroup, when set, places the process in the container's cgroups.
	Cgroup ExecCgroup
}

// ExecProcess is a process started by Exec: nsenter, outside the
// container, whose exit status is the command's. Its Pid is nsenter's host
// PID; Wait and Signal are a Process's. Signalling nsenter with SIGKILL
// kills the command too: its parent-death signal is SIGKILL (see
// rearmDeathSignal).
type ExecProcess struct {
	Process
	// Console is the terminal's master side when ExecOptions.TTY, or nil.
	// The caller owns it.
	Console *os.File
}

// execConfig is what the parent sends the exec stage.
type execConfig struct {
	Process       initConfig
	TTY           bool
	Width, Height uint16
}

// ExecTarget names a container's init process.
type ExecTarget struct {
	// PID is its host PID, and PIDFD a pidfd of it (pidfd_open) opened
	// while it was an unreaped child of the caller, so that it names that
	// process and no other that may reuse the PID later.
	PID, PIDFD int
}

// Exec starts opts.Args in the running container that spec describes
// (the spec it was started with) and whose init is target, and
// returns once the command has been executed. The caller becomes the
// process's parent and must reap it with Wait. A command that does not
// exist or cannot be executed is not an error: the process prints why on
// its stderr and exits with ExitNotFound or ExitNotExecutable, as a shell
// would.
func Exec(ctx context.Context, spec *Spec, target ExecTarget, opts *ExecOptions) (*ExecProcess, error) {
	if len(opts.Args) == 0 {
		return nil, errors.New("exec: no command")
	}
	p, err := startExec(ctx, spec, target, opts)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", spec.ID, err)
	}
	return p, nil
}

func startExec(ctx context.Context, spec *Spec, target ExecTarget, opts *ExecOptions) (*ExecProcess, error) {
	process, err := processConfig(spec)
	if err != nil {
		return nil, err
	}
	cmd, conn, err := launchExec(spec, target, opts)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p := &ExecProcess{Process: Process{Pid: cmd.Process.Pid, cmd: cmd}}
	cfg := execConfig{Process: process, TTY: opts.TTY, Width: opts.Width, Height: opts.Height}
	cfg.Process.Args = opts.Args
	err = sendExecConfig(conn, &cfg)
	if err == nil {
		// From here on, the stage's own socket (see privateSocket).
		var own *net.UnixConn
		if own, err = receiveSocket(ctx, conn); err == nil {
			defer own.Close()
			conn = own
		}
	}
	if err == nil && opts.TTY {
		p.Console, err = receiveConsole(ctx, conn)
	}
	if err == nil {
		err = awaitExec(ctx, conn)
	}
	if err != nil {
		// Closing our end first: a stage that has not yet armed its
		// parent-death signal then sees the hang-up before it execs.
		conn.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if p.Console != nil {
			p.Console.Close()
		}
		return nil, err
	}
	return p, nil
}

// launchExec starts nsenter, in the container's cgroups, and returns the
// parent's end of the exec stage's socket.
func launchExec(spec *Spec, target ExecTarget, opts *ExecOptions) (*exec.Cmd, *net.UnixConn, error) {
	exe, err := SealedExe()
	if err != nil {
		return nil, nil, err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, nil, fmt.Errorf("find nsenter (util-linux): %w", err)
	}
	held, err := openTarget(spec, target)
	if err != nil {
		return nil, nil, err
	}
	defer held.close()
	parent, child, err := socketPair()
	if err != nil {
		return nil, nil, err
	}
	defer child.Close()
	cmd := nsenterCommand(nsenter, append([]*os.File{child, exe}, held.files...), held.args)
	if !opts.TTY {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	}
	if err := startInCgroup(cmd, opts.Cgroup); err != nil {
		parent.Close()
		return nil, nil, err
	}
	return cmd, parent, nil
}

// heldTarget holds the namespaces, root and working directory of a
// container's init open, and the nsenter options naming them.
type heldTarget struct {
	files []*os.File
	args  []string
}

func (h *heldTarget) close() {
	for _, f := range h.files {
		f.Close()
	}
}

// openTarget opens what nsenter joins through /proc/<init>, and then
// checks through the pidfd that the init is still alive: a PID names the
// same process as long as it lives, so what was opened is the
// container's, even if the init exited and its PID was reused since the
// caller looked (a host process's namespaces would otherwise be joined).
// nsenter is handed the descriptors, as /proc/self/fd paths, never the
// PID.
//
// The pod's network, IPC and UTS namespaces, which the host's user
// namespace owns, are joined from the host's; the user namespace last
// (nsenter's order). A hostUsers container shares our user namespace,
// which setns refuses to re-enter: there is nothing to join.
func openTarget(spec *Spec, target ExecTarget) (*heldTarget, error) {
	h := &heldTarget{}
	opts := [][2]string{
		{"--mount", "ns/mnt"}, {"--uts", "ns/uts"}, {"--ipc", "ns/ipc"}, {"--net", "ns/net"},
		{"--pid", "ns/pid"}, {"--cgroup", "ns/cgroup"},
	}
	if spec.UserNS != nil {
		opts = append(opts, [2]string{"--user", "ns/user"})
	}
	opts = append(opts, [2]string{"--root", "root"}, [2]string{"--wd", "cwd"})
	proc := "/proc/" + strconv.Itoa(target.PID) + "/"
	for _, o := range opts {
		f, err := os.Open(proc + o[1])
		if err != nil {
			h.close()
			return nil, fmt.Errorf("open the container's %s: %w", o[1], err)
		}
		// ExtraFiles[i] is descriptor 3+i in nsenter, after the socket
		// and the binary.
		fd := execExeFD + 1 + len(h.files)
		h.files = append(h.files, f)
		h.args = append(h.args, o[0]+"=/proc/self/fd/"+strconv.Itoa(fd))
	}
	if err := unix.PidfdSendSignal(target.PIDFD, 0, nil, 0); err != nil {
		h.close()
		return nil, fmt.Errorf("container init is gone: %w", err)
	}
	return h, nil
}

// nsenterCommand is nsenter joining what opts name and executing the exec
// stage from the sealed binary at descriptor execExeFD, through the
// container's /proc, which nsenter's child sees after the chroot and the
// fork into the PID namespace.
func nsenterCommand(path string, files []*os.File, opts []string) *exec.Cmd {
	args := append([]string{"nsenter"}, opts...)
	args = append(args, "--", "/proc/self/fd/"+strconv.Itoa(execExeFD), ExecArg)
	return &exec.Cmd{
		Path:       path,
		Args:       args,
		ExtraFiles: files,
		// Nothing of ours: the command's environment comes with its config.
		Env: []string{},
		Dir: "/",
		SysProcAttr: &syscall.SysProcAttr{
			// Out of the shim's process group and session: a terminal's
			// job control and signals to the shim's group do not reach it.
			Setsid: true,
			// If the shim dies, the exec dies, as the container does.
			// Safe: startInCgroup returns the forking thread to Go, which
			// never ends an unlocked thread.
			Pdeathsig: syscall.SIGKILL,
		},
	}
}

// startInCgroup starts cmd so that it is born in the container's cgroups:
// through CLONE_INTO_CGROUP on cgroup2, else from a locked thread that has
// moved into the container's v1 cgroups and moves back right after the
// fork. If the thread cannot move back it stays locked, and Go ends it
// with its goroutine; the child dies with it (Pdeathsig), and the start
// fails.
func startInCgroup(cmd *exec.Cmd, cg ExecCgroup) error {
	if cg == nil {
		return startExecCmd(cmd)
	}
	if fd, ok := cg.CgroupFD(); ok {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		return startExecCmd(cmd)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		leave, err := cg.EnterThread()
		if err != nil {
			if leave() == nil {
				runtime.UnlockOSThread()
			}
			errc <- fmt.Errorf("enter container cgroups: %w", err)
			return
		}
		err = startExecCmd(cmd)
		if lerr := leave(); lerr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave container cgroups: %w", lerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

func startExecCmd(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nsenter: %w", err)
	}
	return nil
}

func sendExecConfig(conn *net.UnixConn, cfg *execConfig) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode exec config: %w", err)
	}
	msg := binary.LittleEndian.AppendUint64(nil, uint64(len(data)))
	if _, err := conn.Write(append(msg, data...)); err != nil {
		return fmt.Errorf("send exec config: %w", err)
	}
	return nil
}

// receiveConsole receives the terminal's master side, which the exec stage
// opened in the container's devpts, or its error.
func receiveConsole(ctx context.Context, conn *net.UnixConn) (*os.File, error) {
	f, err := receiveFile(ctx, conn, "terminal")
	if err != nil {
		return nil, err
	}
	return f, nil
}

// receiveSocket receives the exec stage's private socket (privateSocket),
// or its error.
func receiveSocket(ctx context.Context, conn *net.UnixConn) (*net.UnixConn, error) {
	f, err := receiveFile(ctx, conn, "exec stage socket")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("receive exec stage socket: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// receiveFile receives one descriptor sent with one byte, or, when the
// stage failed instead, its error message.
func receiveFile(ctx context.Context, conn *net.UnixConn, what string) (*os.File, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("receive %s: %w", what, err)
	}
	if oobn == 0 {
		if n == 0 {
			return nil, fmt.Errorf("exec stage exited before sending its %s", what)
		}
		// The first byte of the stage's error message.
		rest, _ := io.ReadAll(conn)
		return nil, &InitError{Msg: string(buf[:n]) + string(rest)}
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive %s: bad control message: %v", what, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive %s: bad descriptors: %v", what, err)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), what), nil
}
