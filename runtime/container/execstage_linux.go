package container

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// errNotFound is lookPath's failure: no executable file of that name in
// the PATH.
var errNotFound = errors.New("executable file not found in $PATH")

// commandError is a failure to execute the container's command itself,
// the user's to fix, as opposed to a failure to set up its process.
type commandError struct {
	name string // "" when the error names it already
	err  error
}

func (e *commandError) Error() string {
	if e.name == "" {
		return e.err.Error()
	}
	return "exec " + e.name + ": " + e.err.Error()
}

func (e *commandError) Unwrap() error { return e.err }

// exitCode is the shell's status for the failure: 127 for a command that
// does not exist, 126 for one that exists but cannot be executed.
func (e *commandError) exitCode() int {
	if errors.Is(e.err, errNotFound) || errors.Is(e.err, unix.ENOENT) {
		return ExitNotFound
	}
	return ExitNotExecutable
}

// RunExec is the exec stage, run as `peapod internal-exec` by nsenter's
// child inside every namespace of the container. It never returns: it
// execs the command; or, if the command cannot be executed, prints why and
// exits 126 or 127, as a shell would; or reports any other failure to the
// parent and exits 1.
func RunExec() {
	// As in RunInit: everything up to exec on the thread that execs.
	runtime.LockOSThread()
	// The kernel made us non-dumpable already (exeMode); this also covers
	// a binary executed from a copy without that mode.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	sock, err := runExec(os.NewFile(execSockFD, "exec-sock"))
	var ce *commandError
	if errors.As(err, &ce) {
		fmt.Fprintf(os.Stderr, "peapod exec: %v\n", err)
		os.Exit(ce.exitCode())
	}
	fmt.Fprint(sock, err.Error())
	os.Exit(1)
}

// runExec returns why it failed and the socket to report it on.
func runExec(inherited *os.File) (*os.File, error) {
	cfg, err := receiveExecConfig(inherited)
	if err != nil {
		return inherited, err
	}
	sock, err := privateSocket(inherited)
	if err != nil {
		return inherited, err
	}
	if cfg.TTY {
		if err := attachTerminal(sock, cfg); err != nil {
			return sock, err
		}
	}
	return sock, execCommand(&cfg.Process, sock)
}

// privateSocket makes a socket pair, sends one end to the parent over
// the inherited socket and returns the other. nsenter holds the inherited
// socket until it exits, so its closing at our exec would never reach the
// parent; the private one's does: the parent takes EOF on it, with nothing
// written, as the news that the command was executed (see awaitExec).
func privateSocket(inherited *os.File) (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create exec socket: %w", err)
	}
	err = unix.Sendmsg(int(inherited.Fd()), []byte{'s'}, unix.UnixRights(fds[0]), nil, 0)
	unix.Close(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, fmt.Errorf("send exec socket: %w", err)
	}
	return os.NewFile(uintptr(fds[1]), "exec-sock"), nil
}

func receiveExecConfig(sock *os.File) (*execConfig, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(sock, hdr[:]); err != nil {
		return nil, fmt.Errorf("receive exec config: %w", err)
	}
	data := make([]byte, binary.LittleEndian.Uint64(hdr[:]))
	if _, err := io.ReadFull(sock, data); err != nil {
		return nil, fmt.Errorf("receive exec config: %w", err)
	}
	var cfg execConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("decode exec config: %w", err)
	}
	if len(cfg.Process.Args) == 0 {
		return nil, errors.New("exec config has no command")
	}
	return &cfg, nil
}

// attachTerminal opens a terminal in the container's own devpts instance,
// the one its /dev/ptmx leads to (setUpRootfs), makes it our controlling
// terminal and descriptors 0 to 2, and sends its master side to the
// parent. It runs as root of the container's user namespace, so the
// terminal belongs to a user of the container, which it is then given to.
func attachTerminal(sock *os.File, cfg *execConfig) error {
	master, err := os.OpenFile("/dev/pts/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open the container's /dev/pts/ptmx: %w", err)
	}
	defer master.Close()
	slave, err := openPeer(master)
	if err != nil {
		return err
	}
	defer unix.Close(slave)
	if err := unix.Fchown(slave, int(cfg.Process.UID), -1); err != nil {
		return fmt.Errorf("give the terminal to user %d: %w", cfg.Process.UID, err)
	}
	if cfg.Width > 0 && cfg.Height > 0 {
		ws := &unix.Winsize{Row: cfg.Height, Col: cfg.Width}
		if err := unix.IoctlSetWinsize(slave, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set terminal size: %w", err)
		}
	}
	// A new session without a terminal, whose controlling terminal this
	// one becomes: nsenter's child is no group leader, so setsid works.
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("attach terminal: %w", err)
		}
	}
	rights := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(int(sock.Fd()), []byte{'t'}, rights, nil, 0); err != nil {
		return fmt.Errorf("send terminal: %w", err)
	}
	return nil
}

// openPeer unlocks the terminal and opens its slave side from the master
// (TIOCGPTPEER), never by a path an occupant of the container could swap.
func openPeer(master *os.File) (int, error) {
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return -1, fmt.Errorf("unlock terminal: %w", err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return -1, fmt.Errorf("open terminal: %w", errno)
	}
	return int(fd), nil
}
