package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// outputDrainTimeout bounds how long Exec waits, once the process has
// exited, for its output to end: a process it left running in the
// background may hold the streams open for good.
const outputDrainTimeout = 2 * time.Second

// ExecRequest asks the shim to run a process in one of its containers.
type ExecRequest struct {
	Container string   `json:"container"`
	Args      []string `json:"args"`
	// TTY gives the process a terminal of the container's devpts.
	TTY bool `json:"tty,omitempty"`
	// Width and Height are the terminal's initial size.
	Width  uint16 `json:"width,omitempty"`
	Height uint16 `json:"height,omitempty"`
}

// WindowSize is a terminal's size in characters.
type WindowSize struct {
	Width, Height uint16
}

// ExecIO connects an exec'd process to the caller.
type ExecIO struct {
	// Stdin is copied to the process until it ends; nil gives the process
	// an empty stdin. Exec does not wait for a Read of Stdin that blocks
	// past the process's exit.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it.
	// With a terminal, everything comes on Stdout.
	Stdout, Stderr io.Writer
	// Resize, with a terminal, carries its size changes until Exec returns.
	Resize <-chan WindowSize
}

// Exec runs a process in the named container and returns its exit code
// once it has exited and its output has been copied: the shell's
// convention, 128+N for a death by signal N, 126 or 127 for a command that
// cannot be executed or does not exist. When ctx ends first, the shim
// kills the process and Exec returns ctx.Err().
func (c *Client) Exec(ctx context.Context, req *ExecRequest, stdio ExecIO) (int, error) {
	conn, err := c.openExec(ctx, req)
	if err != nil {
		return -1, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	code, err := runSession(conn, req.TTY, stdio)
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", req.Container, err)
	}
	return code, nil
}

// openExec sends the request and returns the connection once the shim
// has switched it to an exec session.
func (c *Client) openExec(ctx context.Context, req *ExecRequest) (*net.UnixConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return nil, fmt.Errorf("shim /exec: %w", err)
	}
	conn := nc.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	body, err := json.Marshal(req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	hreq, err := http.NewRequest(http.MethodPost, "http://shim/exec", bytes.NewReader(body))
	if err == nil {
		err = hreq.Write(conn)
	}
	var resp *http.Response
	if err == nil {
		// The shim sends nothing after the switch until we have sent the
		// streams: this reader cannot have buffered past the response.
		resp, err = http.ReadResponse(bufio.NewReader(conn), hreq)
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("shim /exec: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, responseError(resp)
	}
	return conn, nil
}

// runSession hands the streams over, reads the start and the exit, and
// copies the process's streams meanwhile.
func runSession(conn *net.UnixConn, tty bool, stdio ExecIO) (int, error) {
	var streams *execStreams
	if tty {
		if _, _, err := conn.WriteMsgUnix([]byte{0}, nil, nil); err != nil {
			return -1, err
		}
	} else {
		var err error
		if streams, err = sendPipes(conn); err != nil {
			return -1, err
		}
	}
	events, console, err := readStart(conn)
	if err != nil {
		streams.close()
		return -1, err
	}
	var copies sync.WaitGroup
	if tty {
		if console == nil {
			return -1, errNoTerminal
		}
		defer console.Close()
		streams = &execStreams{stdin: console, out: []*os.File{console}}
		stopResize := watchResize(console, stdio.Resize)
		defer stopResize()
	}
	streams.start(&copies, stdio)
	ev, err := readEvent(events)
	if err == nil && ev.ExitCode == nil {
		err = fmt.Errorf("exec: unexpected event %+v", ev)
	}
	if err != nil {
		streams.close()
		return -1, err
	}
	streams.drain(&copies)
	return *ev.ExitCode, nil
}

// execStreams are our ends of the process's streams.
type execStreams struct {
	stdin *os.File
	// out are stdout and stderr, or the terminal.
	out []*os.File
}

// sendPipes makes the process's three pipes and sends their far ends.
func sendPipes(conn *net.UnixConn) (*execStreams, error) {
	var ours, theirs []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(ours)
			closeAll(theirs)
			return nil, fmt.Errorf("create exec pipes: %w", err)
		}
		if i == 0 {
			ours, theirs = append(ours, w), append(theirs, r)
		} else {
			ours, theirs = append(ours, r), append(theirs, w)
		}
	}
	defer closeAll(theirs)
	rights := unix.UnixRights(int(theirs[0].Fd()), int(theirs[1].Fd()), int(theirs[2].Fd()))
	if _, _, err := conn.WriteMsgUnix([]byte{0}, rights, nil); err != nil {
		closeAll(ours)
		return nil, fmt.Errorf("send exec streams: %w", err)
	}
	return &execStreams{stdin: ours[0], out: ours[1:]}, nil
}

// readStart reads the start event, and the terminal attached to it, and
// returns a reader for the events that follow.
func readStart(conn *net.UnixConn) (*bufio.Reader, *os.File, error) {
	var line []byte
	var console *os.File
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	for !bytes.Contains(line, []byte{'\n'}) {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		// Counts are meaningless (-1) with an error: check it first.
		if err != nil {
			return nil, closeFile(console), fmt.Errorf("read exec start: %w", err)
		}
		if oobn > 0 && console == nil {
			console = parseConsole(oob[:oobn])
		}
		if n == 0 {
			return nil, closeFile(console), fmt.Errorf("read exec start: %w", io.ErrUnexpectedEOF)
		}
		line = append(line, buf[:n]...)
	}
	events := bufio.NewReader(io.MultiReader(bytes.NewReader(line), conn))
	ev, err := readEvent(events)
	switch {
	case err != nil:
	case ev.Error != "":
		err = &RemoteError{Msg: ev.Error}
	case !ev.Started:
		err = fmt.Errorf("exec: unexpected event %+v", ev)
	}
	if err != nil {
		return nil, closeFile(console), err
	}
	return events, console, nil
}

func parseConsole(oob []byte) *os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) == 0 {
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking, so that os.File reads through the poller and a read
	// can be cut short (drain) instead of holding a thread.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil
	}
	return os.NewFile(uintptr(fds[0]), "exec-console")
}

// closeFile closes f if set and returns nil, for error paths.
func closeFile(f *os.File) *os.File {
	if f != nil {
		f.Close()
	}
	return nil
}

// start copies Stdin to the process and its output to Stdout and Stderr.
// The stdin copy ends at Stdin's end, closing the process's stdin (not
// the terminal's, which stays for output), or when the process is gone.
func (s *execStreams) start(copies *sync.WaitGroup, stdio ExecIO) {
	tty := len(s.out) == 1
	if stdio.Stdin != nil {
		go func() {
			io.Copy(s.stdin, stdio.Stdin)
			if !tty {
				s.stdin.Close()
			}
		}()
	} else if !tty {
		s.stdin.Close()
	}
	sinks := []io.Writer{stdio.Stdout, stdio.Stderr}
	for i, f := range s.out {
		w := sinks[i]
		if w == nil {
			w = io.Discard
		}
		copies.Go(func() { io.Copy(w, f) })
	}
}

// drain waits for the output copies to reach the end of the output, at
// most outputDrainTimeout, then closes our ends.
func (s *execStreams) drain(copies *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputDrainTimeout):
		for _, f := range s.out {
			f.SetReadDeadline(time.Now())
		}
		<-done
	}
	s.close()
}

func (s *execStreams) close() {
	if s == nil {
		return
	}
	for _, f := range append([]*os.File{s.stdin}, s.out...) {
		f.Close()
	}
}

// watchResize applies each size from sizes to the terminal until stop.
func watchResize(console *os.File, sizes <-chan WindowSize) (stop func()) {
	if sizes == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-quit:
				return
			case ws, ok := <-sizes:
				if !ok {
					return
				}
				unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Height, Col: ws.Width})
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// errNoTerminal reports a terminal session without its terminal.
var errNoTerminal = errors.New("exec: the shim sent no terminal")
