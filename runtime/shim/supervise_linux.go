package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/peapod/peapod/runtime/logs"
)

var errQuitting = errors.New("shim is shutting down")

// start launches an attempt, registers it with the reaper, records its
// state and hands it to a supervisor goroutine.
func (s *server) start(ctx context.Context, req *StartRequest) (*State, error) {
	done, err := s.claim(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	defer done()
	s.launching.RLock()
	defer s.launching.RUnlock()
	s.mu.Lock()
	cur, quitting := s.containers[req.Name], s.quitting
	running := cur != nil && cur.exit == nil
	s.mu.Unlock()
	switch {
	case quitting:
		return nil, errQuitting
	case cur != nil && cur.state.Attempt == req.Attempt:
		st := cur.state
		return &st, nil
	case running:
		return nil, fmt.Errorf("start %s attempt %d: attempt %d still runs", req.Name, req.Attempt, cur.state.Attempt)
	}
	dir := AttemptDir(s.dir, req.Name, req.Attempt)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create attempt dir: %w", err)
	}
	c, err := s.launchWithLogs(ctx, req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.owned[c.state.PID] = true
	s.mu.Unlock()
	// The state record must exist before anyone learns of the attempt, and
	// the exit record (written by the supervisor) must come after it.
	if err := writeState(dir, &c.state); err != nil {
		_ = c.launched.Process.Signal(syscall.SIGKILL)
		s.log.Error("record container start", "container", req.Name, "err", err)
	}
	s.mu.Lock()
	s.containers[req.Name] = c
	s.mu.Unlock()
	s.supervisors.Go(func() { s.supervise(c, dir) })
	st := c.state
	return &st, err
}

// claim waits until no other start of the named container runs and marks
// one running, which makes start's "already the latest attempt" check
// race-free; starts of different containers do not wait for each other.
// done ends the claim.
func (s *server) claim(ctx context.Context, name string) (done func(), err error) {
	for {
		s.mu.Lock()
		busy, ok := s.starting[name]
		if !ok {
			ch := make(chan struct{})
			s.starting[name] = ch
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.starting, name)
				s.mu.Unlock()
				close(ch)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// launchWithLogs creates the container's output pipes and log writer and
// launches it.
func (s *server) launchWithLogs(ctx context.Context, req *StartRequest) (*attempt, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("create stderr pipe: %w", err)
	}
	// Once created, the writer owns the read ends.
	w, err := logs.NewWriter(req.LogPath, outR, errR, logs.WriterOptions{
		MaxSize: req.LogMaxSize, MaxFiles: req.LogMaxFiles, Log: s.log.With("container", req.Name),
	})
	if err != nil {
		outR.Close()
		errR.Close()
		outW.Close()
		errW.Close()
		return nil, err
	}
	l, err := s.launch.Launch(ctx, req.Spec, outW, errW)
	// The container holds its own copies of the write ends; the shim's must
	// go, or the log writer would never see EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		// A failed launch leaves no process behind, but Close rather than
		// Wait: nothing must keep this request waiting.
		w.Close()
		return nil, fmt.Errorf("launch container %s: %w", req.Name, err)
	}
	c := &attempt{
		state:    State{Name: req.Name, Attempt: req.Attempt, PID: l.PID, StartedAt: time.Now().UTC()},
		launched: l,
		writer:   w,
		done:     make(chan struct{}),
	}
	return c, nil
}

// supervise waits for the container's exit, drains its logs, writes the
// exit record and only then publishes the exit.
func (s *server) supervise(c *attempt, dir string) {
	e := s.waitExit(c)
	s.drainLogs(c)
	if err := writeExit(dir, e); err != nil {
		s.log.Error("record container exit", "container", e.Name, "err", err)
	}
	s.log.Info("container exited", "container", e.Name, "attempt", e.Attempt, "code", e.ExitCode, "oom", e.OOMKilled)
	s.mu.Lock()
	c.exit = e
	close(c.done)
	for ch := range s.subs {
		select {
		case ch <- Event{Name: e.Name, Attempt: e.Attempt}:
		default:
		}
	}
	s.mu.Unlock()
	if c.launched.Release != nil {
		c.launched.Release()
	}
}

// waitExit reaps the container's init and reads how it ended.
func (s *server) waitExit(c *attempt) *Exit {
	ps, err := c.launched.Process.Wait()
	e := &Exit{Name: c.state.Name, Attempt: c.state.Attempt, FinishedAt: time.Now().UTC()}
	s.mu.Lock()
	delete(s.owned, c.state.PID)
	s.mu.Unlock()
	// An orphan's exit may have queued behind this one (see reapOrphans).
	s.reapOrphans()
	ws, ok := waitStatus(ps)
	switch {
	case err != nil || !ok:
		s.log.Error("wait for container", "container", e.Name, "err", err)
		e.ExitCode, e.Message = 255, fmt.Sprintf("shim lost the container's exit status: %v", err)
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.ExitCode = 128 + e.Signal
	default:
		e.ExitCode = ws.ExitStatus()
	}
	if f := c.launched.OOMKilled; f != nil {
		oom, err := f()
		if err != nil {
			s.log.Warn("read container OOM kills", "container", e.Name, "err", err)
		}
		e.OOMKilled = oom
	}
	return e
}

func waitStatus(ps *os.ProcessState) (syscall.WaitStatus, bool) {
	if ps == nil {
		return 0, false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ws, ok
}

func (s *server) drainLogs(c *attempt) {
	done := make(chan error, 1)
	go func() { done <- c.writer.Wait() }()
	t := time.NewTimer(logDrainTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			s.log.Warn("write container log", "container", c.state.Name, "err", err)
		}
	case <-t.C:
		s.log.Warn("container output still open after its exit; closing the log", "container", c.state.Name)
		_ = c.writer.Close()
		<-done
	}
}

// stop sends SIGTERM to the container's init and SIGKILL after grace, then
// waits for the exit record. Signalling through the pidfd that the Process
// holds cannot hit a recycled PID.
func (s *server) stop(ctx context.Context, c *attempt, grace time.Duration) (*Exit, error) {
	if e := s.exitOf(c); e != nil {
		return e, nil
	}
	if err := signalIfAlive(c, syscall.SIGTERM); err != nil {
		return nil, err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return s.exitOf(c), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	// SIGKILL to the init of a pid namespace kills every process in it.
	if err := signalIfAlive(c, syscall.SIGKILL); err != nil {
		return nil, err
	}
	select {
	case <-c.done:
		return s.exitOf(c), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *server) exitOf(c *attempt) *Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.exit
}

// signalIfAlive signals the container's init; a container that has
// already exited (its process may be released) is not an error.
func signalIfAlive(c *attempt, sig syscall.Signal) error {
	err := c.launched.Process.Signal(sig)
	if err == nil || errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	select {
	case <-c.done:
		return nil
	default:
		return fmt.Errorf("signal container %s: %w", c.state.Name, err)
	}
}

// reapLoop reaps the orphans re-parented to the shim (it is their
// subreaper) on every SIGCHLD until ctx is done.
func (s *server) reapLoop(ctx context.Context, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		}
		s.reapOrphans()
	}
}

// reapOrphans reaps exited children that no container owns. It peeks with
// WNOWAIT first so that it never takes a container's exit from the
// goroutine waiting in its Process.Wait (KERNEL-NOTES Q7). The kernel
// reports one zombie at a time: when it is a container's, the orphans
// behind it wait until that container's Wait has reaped it, after which
// waitExit calls reapOrphans again. Signals coalesce, so one SIGCHLD may
// stand for many exits: loop until none is left.
func (s *server) reapOrphans() {
	s.launching.Lock()
	defer s.launching.Unlock()
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		pid := siginfoPID(&info)
		if err != nil || pid == 0 || s.isOwned(pid) {
			return
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil && !errors.Is(err, unix.EINTR) {
			s.log.Warn("reap orphan", "pid", pid, "err", err)
			return
		}
	}
}

func (s *server) isOwned(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owned[pid]
}

// siginfoPID returns si_pid of a SIGCHLD siginfo: the first field of the
// union that follows signo, errno, code and padding (offset 16 on 64-bit
// Linux). x/sys/unix does not name it. Zero means no child had exited.
func siginfoPID(info *unix.Siginfo) int {
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), 16)))
}
