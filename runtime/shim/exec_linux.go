package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod/peapod/runtime/container"
)

// execStartTimeout bounds an exec's start (nsenter, the exec stage, the
// command's exec) on a busy machine.
const execStartTimeout = time.Minute

// An exec session runs on the shim's socket, upgraded from one HTTP
// request, because the process's streams travel as descriptors
// (SCM_RIGHTS) rather than as copied bytes:
//
//  1. client: POST /exec with an ExecRequest. The shim answers an error
//     as any request, or 101 Switching Protocols, and the connection is
//     the session's from then on.
//  2. client: one byte, carrying its pipes for the process's stdin, stdout
//     and stderr without a terminal, nothing with one. They are pipes the
//     client made, so nothing of the client's own (a host terminal, a
//     file) reaches the container.
//  3. shim: one execEvent line, "started" (carrying the terminal's master
//     side with a terminal) or an error.
//  4. shim: one execEvent line with the exit code, then it closes.
//
// The client closing its end before the exit line, for any reason (a
// cancelled context, a killed CLI, a probe's timeout), makes the shim kill
// the process: an exec does not outlive its session. Processes the
// command started and left behind in the container stay until it stops.

// execEvent is one line the shim sends in an exec session.
type execEvent struct {
	Started  bool   `json:"started,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
	Error    string `json:"error,omitempty"`
}

// beginExec counts a new exec session unless the shim is shutting down.
func (s *server) beginExec() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quitting {
		return false
	}
	s.execs.Add(1)
	return true
}

func (s *server) handleExec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode exec request: %w", err))
		return
	}
	if len(req.Args) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("exec: no command"))
		return
	}
	s.mu.Lock()
	c := s.containers[req.Container]
	s.mu.Unlock()
	if c == nil || s.exitOf(c) != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("container %q is not running", req.Container))
		return
	}
	if c.launched.Exec == nil {
		writeError(w, http.StatusNotImplemented, fmt.Errorf("container %q: this shim cannot exec", req.Container))
		return
	}
	if !s.beginExec() {
		writeError(w, http.StatusServiceUnavailable, errQuitting)
		return
	}
	defer s.execs.Done()
	conn, err := hijack(w)
	if err != nil {
		s.log.Error("exec: take over connection", "container", req.Container, "err", err)
		return
	}
	defer conn.Close()
	if err := s.runExec(conn, c, &req); err != nil {
		s.log.Warn("exec session", "container", req.Container, "err", err)
	}
}

// hijack takes the connection over from the HTTP server and switches it to
// the exec protocol. The client sends nothing more until it has read the
// switch, so no byte (or descriptor) can be left in the server's buffer.
func hijack(w http.ResponseWriter) (*net.UnixConn, error) {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	conn, ok := nc.(*net.UnixConn)
	if !ok || brw.Reader.Buffered() > 0 {
		nc.Close()
		return nil, errors.New("exec: not a unix socket, or data before the switch")
	}
	if _, err := conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: peapod-exec\r\n\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// runExec starts the process with the streams the client sends, reports
// the start and then the exit, and kills the process if the client goes
// away first.
func (s *server) runExec(conn *net.UnixConn, c *attempt, req *ExecRequest) error {
	opts := &container.ExecOptions{Args: req.Args, TTY: req.TTY, Width: req.Width, Height: req.Height}
	stdio, err := receiveStdio(conn, req.TTY)
	if err != nil {
		return err
	}
	if !req.TTY {
		opts.Stdin, opts.Stdout, opts.Stderr = stdio[0], stdio[1], stdio[2]
	}
	p, err := s.startExec(c, opts)
	for _, f := range stdio {
		f.Close()
	}
	if err != nil {
		return sendEvent(conn, execEvent{Error: err.Error()}, nil)
	}
	var console *os.File
	if p.Console != nil {
		console = p.Console
		defer console.Close()
	}
	if err := sendEvent(conn, execEvent{Started: true}, console); err != nil {
		p.Signal(syscall.SIGKILL)
	}
	code := s.waitExec(conn, c, p)
	return sendEvent(conn, execEvent{ExitCode: &code}, nil)
}

// receiveStdio reads the client's byte and, without a terminal, the three
// descriptors attached to it.
func receiveStdio(conn *net.UnixConn, tty bool) ([]*os.File, error) {
	conn.SetReadDeadline(time.Now().Add(execStartTimeout))
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receive exec streams: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("receive exec streams: %w", err)
		}
		for i := range msgs {
			got, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				return nil, fmt.Errorf("receive exec streams: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		unix.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), "exec-stdio")
	}
	if want := map[bool]int{false: 3, true: 0}[tty]; len(files) != want {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("receive exec streams: got %d descriptors, want %d", len(files), want)
	}
	return files, nil
}

// startExec starts the process and registers it before the orphan reaper
// can see it exit (see server.launching).
func (s *server) startExec(c *attempt, opts *container.ExecOptions) (*container.ExecProcess, error) {
	ctx, cancel := context.WithTimeout(context.Background(), execStartTimeout)
	defer cancel()
	s.launching.RLock()
	defer s.launching.RUnlock()
	p, err := c.launched.Exec(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.owned[p.Pid] = true
	s.mu.Unlock()
	return p, nil
}

// waitExec reaps the process and returns its exit code, killing it first
// if the client closes the session.
func (s *server) waitExec(conn *net.UnixConn, c *attempt, p *container.ExecProcess) int {
	gone := make(chan struct{})
	go func() {
		// The client sends nothing more: a read returns when it closes
		// (or once we close the connection, after the exit line).
		conn.Read(make([]byte, 1))
		close(gone)
	}()
	exited := make(chan *os.ProcessState, 1)
	go func() {
		ps, err := p.Wait()
		if err != nil {
			s.log.Error("wait for exec", "container", c.state.Name, "err", err)
		}
		exited <- ps
	}()
	var ps *os.ProcessState
	select {
	case ps = <-exited:
	case <-gone:
		p.Signal(syscall.SIGKILL)
		ps = <-exited
	}
	s.mu.Lock()
	delete(s.owned, p.Pid)
	s.mu.Unlock()
	// An orphan's exit may have queued behind this one (see reapOrphans).
	s.reapOrphans()
	ws, ok := waitStatus(ps)
	switch {
	case !ok:
		return 255
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return ws.ExitStatus()
	}
}

// sendEvent writes one event line, with f's descriptor attached if set.
func sendEvent(conn *net.UnixConn, ev execEvent, f *os.File) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var oob []byte
	if f != nil {
		oob = unix.UnixRights(int(f.Fd()))
	}
	if _, _, err := conn.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		return fmt.Errorf("send exec event: %w", err)
	}
	return nil
}

// readEvent reads one event line from r.
func readEvent(r *bufio.Reader) (*execEvent, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var ev execEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, fmt.Errorf("decode exec event: %w", err)
	}
	return &ev, nil
}
