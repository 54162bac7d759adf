// Package shim is the per-pod supervisor: the peapod binary re-executed as
// `peapod internal-shim`, detached from the agent, parent and subreaper of
// the pod's containers, owner of their output and of their exit records.
// The agent talks to it over a unix socket in the pod's state directory
// with Client, and starts it with Launch, or binds a spare shim started
// ahead of the pod with StartSpare.
package shim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Command is the hidden subcommand that runs the shim.
const Command = "internal-shim"

// Stages of the shim command: the agent runs "start", which runs "serve"
// in a new session and exits at once, so the shim is re-parented away from
// the agent: the agent has no child to reap and no goroutine tied to the
// shim's life, and killing the agent (even with SIGKILL) leaves it alone.
//
// With spareFlag and the directory that holds the pod directories in place
// of a pod directory, the two stages start a spare shim: one started ahead
// of its pod, which waits on readyFD for the agent to bind it to a pod
// directory (see StartSpare).
const (
	stageStart = "start"
	stageServe = "serve"
	spareFlag  = "--spare"
)

// readyFD is the descriptor on which the shim reports "ok" once its socket
// listens, or why it could not start. A spare shim first reports "spare
// PID" on it and then reads the pod directory from it.
const readyFD = 3

// Memory settings: a shim per pod must stay small, but its live heap after
// the binary's package initialisation is already a few MiB, and a soft
// limit near it makes the collector run without pause: with 8 MiB, starting
// a container cost 50 ms of extra CPU and 10 idle shims 480 ms of CPU a
// minute (hack/bench). The limit only guards against runaway growth.
const (
	gcPercent   = 100
	memoryLimit = 64 << 20
)

// Main runs the shim command with os.Args[2:] ("start|serve POD-DIR", or
// "start|serve --spare PODS-DIR") and exits. cmd/peapod calls it before
// anything else when os.Args[1] is Command.
func Main() {
	newLauncher := func(dir string, log *slog.Logger) Launcher { return newContainerLauncher(dir, log) }
	if err := run(os.Args[2:], newLauncher); err != nil {
		fmt.Fprintln(os.Stderr, "peapod shim:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// launcherFunc builds the shim's Launcher for a pod directory.
type launcherFunc func(dir string, log *slog.Logger) Launcher

func run(args []string, newLauncher launcherFunc) error {
	ready := os.NewFile(readyFD, "ready")
	var err error
	switch {
	case len(args) == 2 && args[0] == stageStart:
		err = startDetached(args[1], ready)
	case len(args) == 2 && args[0] == stageServe:
		err = serve(args[1], ready, newLauncher)
	case len(args) == 3 && args[0] == stageStart && args[1] == spareFlag:
		err = startSpare(args[2], ready)
	case len(args) == 3 && args[0] == stageServe && args[1] == spareFlag:
		err = serveSpare(args[2], ready, newLauncher)
	default:
		err = fmt.Errorf("usage: %s start|serve POD-DIR, or %s start|serve %s PODS-DIR", Command, Command, spareFlag)
	}
	if err != nil && ready != nil {
		// Tell the agent why; it gives up on EOF without "ok" anyway.
		fmt.Fprintln(ready, err)
	}
	return err
}

// startDetached runs the serve stage for the pod directory dir, with its
// output in the pod's shim log.
func startDetached(dir string, ready *os.File) error {
	logf, err := openLog(dir)
	if err != nil {
		return err
	}
	defer logf.Close()
	return detach(ready, logf, stageServe, dir)
}

// startSpare runs the serve stage of a spare shim for pod directories in
// podsDir. Its output goes to /dev/null until it is bound to a pod.
func startSpare(podsDir string, ready *os.File) error {
	return detach(ready, nil, stageServe, spareFlag, podsDir)
}

// detach runs the shim command with args in a new session, with out (nil
// for /dev/null) as its stdout and stderr and the ready descriptor as its
// only other one, and returns without waiting for it.
func detach(ready, out *os.File, args ...string) error {
	// /proc/self/exe, not os.Executable: we may run from the agent's
	// sealed memfd copy, whose name ("/memfd:...") is no path to exec.
	cmd := exec.Command("/proc/self/exe", append([]string{Command}, args...)...)
	cmd.Args[0] = os.Args[0]
	cmd.Dir = "/"
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.ExtraFiles = []*os.File{ready}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start shim: %w", err)
	}
	// Not waiting is the point: this process exits now and the shim is
	// re-parented to the nearest subreaper or init.
	return cmd.Process.Release()
}

func openLog(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open shim log: %w", err)
	}
	return f, nil
}

// serve is the shim proper.
func serve(dir string, ready *os.File, newLauncher launcherFunc) error {
	if err := prepare(); err != nil {
		return err
	}
	return serveDir(dir, ready, newLauncher)
}

// prepare sets up what every shim needs, whichever its pod.
func prepare() error {
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(memoryLimit)
	// Orphans from the pod's pid namespaces are re-parented to the shim
	// instead of init, so the shim reaps them promptly.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	return nil
}

// serveDir binds the shim socket of the pod directory dir, reports "ok"
// on ready and serves the pod until it is shut down.
func serveDir(dir string, ready *os.File, newLauncher launcherFunc) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pod_dir", dir)
	ln, err := listen(dir)
	if err != nil {
		return err
	}
	defer os.Remove(filepath.Join(dir, SocketFile))
	if err := WriteFileAtomic(filepath.Join(dir, PIDFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		ln.Close()
		return err
	}
	if _, err := ready.WriteString("ok\n"); err != nil {
		ln.Close()
		return fmt.Errorf("report readiness: %w", err)
	}
	ready.Close()
	log.Info("shim serving", "pid", os.Getpid())
	err = newServer(dir, newLauncher(dir, log), log).Serve(ln)
	log.Info("shim exiting", "err", err)
	return err
}

// listen binds the shim socket, replacing one left by a shim that died.
// The agent starts a shim only after the old one stopped answering.
func listen(dir string) (net.Listener, error) {
	sock := filepath.Join(dir, SocketFile)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale shim socket: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on shim socket: %w", err)
	}
	// The pod dir is root's alone (0700), so the socket is never reachable
	// by others, even before this chmod. The shim keeps the agent's umask
	// rather than narrowing it: its containers inherit it.
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict shim socket: %w", err)
	}
	return ln, nil
}
