package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A spare shim is started ahead of its pod, exactly as Launch starts one
// but with a unix socketpair (SOCK_SEQPACKET: one message per read) as its
// ready descriptor instead of a pipe:
//
//	spare -> agent  "spare PID"  started; waits for its pod
//	agent -> spare  POD-DIR      bind to that pod directory
//	spare -> agent  "ok"         serving, as from Launch (or the error)
//
// The spare sets up nothing of a pod before it is bound: no log, socket or
// PID file. EOF before POD-DIR (the agent exited, crashed or dropped it)
// makes it exit quietly.

// killTimeout bounds the wait for a killed spare to exit.
const killTimeout = 5 * time.Second

// Spare is a shim started by StartSpare and not yet bound to a pod. It is
// not the caller's child. The caller owns it: Bind makes it a pod's shim;
// Close drops it. A Spare is not safe for concurrent use.
type Spare struct {
	pid int
	// pidfd names the spare for a kill that cannot hit a process that
	// reused its PID; conn is the agent's end of the socketpair. Both are
	// -1 and nil once Bind succeeded or Close ran.
	pidfd int
	conn  *os.File
}

// StartSpare starts a spare shim from exe (a peapod binary) for a pod
// directory in podsDir, and returns once it waits for its pod.
func StartSpare(ctx context.Context, exe, podsDir string) (*Spare, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, launchTimeout)
		defer cancel()
	}
	conn, theirs, err := socketpair()
	if err != nil {
		return nil, err
	}
	waitErr, err := runStartStage(exe, theirs, spareFlag, podsDir)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Spare{pidfd: -1, conn: conn}
	if err := s.awaitReady(ctx, waitErr); err != nil {
		// Closing our end makes a spare that is still on its way exit.
		s.Close()
		return nil, err
	}
	return s, nil
}

// socketpair returns the agent's end, close-on-exec and non-blocking (so
// that deadlines work), and the spare's end.
func socketpair() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create spare shim socket: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("create spare shim socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "spare shim"), os.NewFile(uintptr(fds[1]), "spare shim"), nil
}

// awaitReady reads the spare's "spare PID" and pins that process with a
// pidfd.
func (s *Spare) awaitReady(ctx context.Context, waitErr error) error {
	msg, err := readReady(ctx, s.conn)
	if err != nil {
		return err
	}
	pid, ok := strings.CutPrefix(msg, "spare ")
	if !ok {
		if msg == "" {
			msg = fmt.Sprintf("exited before it was ready (%v)", waitErr)
		}
		return fmt.Errorf("start spare shim: %s", msg)
	}
	if s.pid, err = strconv.Atoi(pid); err != nil || s.pid <= 0 {
		return fmt.Errorf("start spare shim: bad report %q", msg)
	}
	if s.pidfd, err = unix.PidfdOpen(s.pid, 0); err != nil {
		return fmt.Errorf("open spare shim process %d: %w", s.pid, err)
	}
	// Only the spare holds the other end (its start stage has exited), and
	// it sends nothing more until it is bound: if that end is still open
	// now, the spare was alive when the pidfd was opened, so the pidfd is
	// the spare's and not that of a process that reused its PID.
	if !s.peerOpen() {
		return fmt.Errorf("start spare shim: process %d exited", s.pid)
	}
	return nil
}

// peerOpen reports whether the spare's end of the socketpair is open and
// has sent nothing.
func (s *Spare) peerOpen() bool {
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	err = rc.Control(func(fd uintptr) {
		n, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}, 0)
	})
	return err == nil && n == 0
}

// PID returns the spare's process ID.
func (s *Spare) PID() int { return s.pid }

// Bind makes the spare the shim of the pod whose state directory is dir,
// a directory in the podsDir given to StartSpare, and returns once it
// listens on its socket, as Launch does. On success s is spent. On failure
// the spare may be dead, alive or half-bound (listening on dir's socket):
// the caller must Close it before it starts another shim for dir.
func (s *Spare) Bind(ctx context.Context, dir string) error {
	if s.conn == nil {
		return errors.New("bind spare shim: already bound or closed")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, launchTimeout)
		defer cancel()
	}
	d, _ := ctx.Deadline()
	if err := s.conn.SetWriteDeadline(d); err != nil {
		return fmt.Errorf("bind spare shim %d: %w", s.pid, err)
	}
	if _, err := s.conn.WriteString(dir); err != nil {
		return fmt.Errorf("bind spare shim %d: %w", s.pid, err)
	}
	msg, err := readReady(ctx, s.conn)
	if err != nil {
		return fmt.Errorf("bind spare shim %d: %w", s.pid, err)
	}
	if msg != "ok" {
		if msg == "" {
			msg = "exited before it was ready; see " + LogFile
		}
		return fmt.Errorf("bind spare shim %d: %s", s.pid, msg)
	}
	s.release()
	return nil
}

// Close drops the spare unless Bind succeeded: it closes the agent's end,
// kills the spare and waits until it has exited. The SIGKILL is for a
// spare that hangs or is half-bound after a failed Bind; an idle one exits
// on the EOF anyway.
func (s *Spare) Close() error {
	if s.conn == nil {
		return nil
	}
	// Our end first: an idle spare exits on the EOF by itself.
	s.conn.Close()
	s.conn = nil
	var err error
	if s.pidfd >= 0 {
		err = unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
		if errors.Is(err, unix.ESRCH) {
			err = nil // exited already
		}
		if err == nil {
			err = WaitExited(s.pidfd, killTimeout)
		}
	}
	s.release()
	if err != nil {
		return fmt.Errorf("kill spare shim %d: %w", s.pid, err)
	}
	return nil
}

func (s *Spare) release() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
}

// WaitExited waits up to timeout until the process of the pidfd has
// exited.
func WaitExited(pidfd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond))
		switch {
		case n > 0:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		default:
			return errors.New("still running after SIGKILL")
		}
	}
}

// serveSpare is the serve stage of a spare shim: it reports "spare PID" on
// ready, waits there for the pod directory, and then serves it as serve
// does. Everything of the pod (log, socket, PID file) is set up only then.
func serveSpare(podsDir string, ready *os.File, newLauncher launcherFunc) error {
	if err := prepare(); err != nil {
		return err
	}
	warmUp()
	dir, err := awaitPod(ready, podsDir)
	if errors.Is(err, errDropped) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := adopt(dir); err != nil {
		return err
	}
	// Show the pod's directory in ps, as a launched shim does. A spare
	// whose command line could not change is still told by its working
	// directory.
	if err := setCmdline(os.Args[0], Command, stageServe, dir); err != nil {
		fmt.Fprintln(os.Stderr, "peapod shim: show the pod directory on the command line:", err)
	}
	return serveDir(dir, ready, newLauncher)
}

// warmUp does, while the spare waits, the work that a shim's first start
// would otherwise do on the pod's critical path: encoding/json builds and
// caches its codec for each type the first time it meets it.
func warmUp() {
	for _, v := range []any{&StartRequest{}, &ContainerSpec{Cgroups: &CgroupConfig{}}, &State{}, &Exit{}} {
		b, err := json.Marshal(v)
		if err == nil {
			_ = json.Unmarshal(b, v)
		}
	}
}

// errDropped tells that the agent closed its end before binding the spare.
var errDropped = errors.New("spare shim dropped")

// awaitPod reports the spare ready and returns the pod directory that the
// agent binds it to.
func awaitPod(ready *os.File, podsDir string) (string, error) {
	if _, err := fmt.Fprintf(ready, "spare %d\n", os.Getpid()); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return "", errDropped
		}
		return "", fmt.Errorf("report spare: %w", err)
	}
	b := make([]byte, 4096)
	n, err := ready.Read(b)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return "", errDropped
	}
	if err != nil {
		return "", fmt.Errorf("wait for pod: %w", err)
	}
	dir := string(b[:n])
	if filepath.Clean(dir) != dir || filepath.Dir(dir) != podsDir {
		return "", fmt.Errorf("bind spare: %q is not a pod directory in %s", dir, podsDir)
	}
	return dir, nil
}

// adopt makes the spare the shim of dir to whoever looks at it: its output
// goes to the pod's shim log, and its working directory becomes dir, which
// is how the runtime tells a bound spare whose command line still names
// only the pods directory from a process that reused its PID (see Serves).
// Both come before the PID file, which tells the runtime which process to
// kill.
func adopt(dir string) error {
	logf, err := openLog(dir)
	if err != nil {
		return err
	}
	defer logf.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(logf.Fd()), fd, 0); err != nil {
			return fmt.Errorf("redirect output to shim log: %w", err)
		}
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("enter pod directory: %w", err)
	}
	return nil
}

// runStartStage runs `exe internal-shim start ARGS...` with ready as its
// descriptor 3 and waits for it: it exits as soon as it has started the
// serve stage. Only the serve stage may hold ready afterwards, or the
// caller would not see EOF when it dies, so runStartStage closes ready.
// waitErr is how the start stage ended.
func runStartStage(exe string, ready *os.File, args ...string) (waitErr, err error) {
	cmd := exec.Command(exe, append([]string{Command, stageStart}, args...)...)
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{ready}
	// A session of its own from the first stage on, so a signal to the
	// agent's process group (e.g. ^C in a terminal) never reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	ready.Close()
	if err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	return cmd.Wait(), nil
}

// Serves reports whether process pid is the shim serving the pod directory
// dir, as far as /proc tells: a shim launched for dir names it on its
// command line; a spare bound to dir names the pods directory there and
// works in dir (adopt). A process that reused the PID of a dead shim does
// neither. Callers pin the process with a pidfd before asking.
func Serves(pid int, dir string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
	switch {
	case len(args) == 4 && args[1] == Command && args[2] == stageServe:
		return args[3] == dir
	case len(args) == 5 && args[1] == Command && args[2] == stageServe && args[3] == spareFlag:
		cwd, err := os.Readlink(proc + "/cwd")
		return args[4] == filepath.Dir(dir) && err == nil && cwd == dir
	}
	return false
}
