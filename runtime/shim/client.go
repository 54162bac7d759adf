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
	"path/filepath"
	"time"
)

// StartRequest asks the shim to start one container attempt.
type StartRequest struct {
	Name    string `json:"name"`
	Attempt int    `json:"attempt"`
	// Spec is the container's resolved configuration; only the shim's
	// Launcher interprets it.
	Spec json.RawMessage `json:"spec"`
	// LogPath is the CRI log file for the attempt's stdout and stderr.
	LogPath     string `json:"logPath"`
	LogMaxSize  int64  `json:"logMaxSize,omitempty"`
	LogMaxFiles int    `json:"logMaxFiles,omitempty"`
}

// Status is the shim's view of the latest attempt of one container.
type Status struct {
	State
	// Exit is nil while the attempt runs.
	Exit *Exit `json:"exit,omitempty"`
}

// Event tells that an attempt exited and its exit record is written.
type Event struct {
	Name    string `json:"name"`
	Attempt int    `json:"attempt"`
}

type stopRequest struct {
	Name  string        `json:"name"`
	Grace time.Duration `json:"grace"`
}

type shutdownRequest struct {
	Grace time.Duration `json:"grace"`
}

type errorResponse struct {
	Error string `json:"error"`
}

// ErrNotFound is returned by Stop for a container the shim never started.
var ErrNotFound = errors.New("no such container in shim")

// RemoteError is a failure that the shim reports for a request it ran, as
// opposed to a failure to reach it.
type RemoteError struct {
	Msg      string
	notFound bool
}

func (e *RemoteError) Error() string { return "shim: " + e.Msg }

// Is makes a 404 answer match ErrNotFound.
func (e *RemoteError) Is(target error) bool { return target == ErrNotFound && e.notFound }

// Client talks to the shim of one pod. It is safe for concurrent use.
type Client struct {
	hc   *http.Client
	sock string
}

// NewClient returns a client for the shim whose state directory is podDir.
// It does not connect until a method is called.
func NewClient(podDir string) *Client {
	sock := filepath.Join(podDir, SocketFile)
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{hc: &http.Client{Transport: tr}, sock: sock}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Ping returns nil when the shim answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/ping", nil, nil)
}

// Start starts an attempt and returns its state once the state record is
// written. Starting the attempt that is already the latest returns its
// state again.
func (c *Client) Start(ctx context.Context, req *StartRequest) (*State, error) {
	var st State
	if err := c.do(ctx, http.MethodPost, "/start", req, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Stop sends SIGTERM to the container's init, SIGKILL after grace, and
// returns the exit record once it is written.
func (c *Client) Stop(ctx context.Context, name string, grace time.Duration) (*Exit, error) {
	var e Exit
	if err := c.do(ctx, http.MethodPost, "/stop", stopRequest{Name: name, Grace: grace}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Containers returns the latest attempt of every container the shim started.
func (c *Client) Containers(ctx context.Context) ([]Status, error) {
	var st []Status
	if err := c.do(ctx, http.MethodGet, "/containers", nil, &st); err != nil {
		return nil, err
	}
	return st, nil
}

// Shutdown stops every container with grace, then makes the shim exit.
// It returns once the containers' exits are recorded.
func (c *Client) Shutdown(ctx context.Context, grace time.Duration) error {
	return c.do(ctx, http.MethodPost, "/shutdown", shutdownRequest{Grace: grace}, nil)
}

// Events calls fn for each exit the shim reports until ctx is done or the
// connection ends, which happens when the shim exits. connected, unless
// nil, is called once the shim has registered the stream: every exit from
// then on reaches fn. It returns nil when the shim closed the stream as it
// exited on request, ctx.Err() when ctx ended it, and an error when the
// stream was cut (the shim died).
func (c *Client) Events(ctx context.Context, connected func(), fn func(Event)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim/events", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("shim events: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	if connected != nil {
		connected()
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err == nil {
			fn(ev)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// A shim that exits on request ends the stream properly; one that
	// dies cuts it short, which the scanner reports (unexpected EOF).
	if err := sc.Err(); err != nil {
		return fmt.Errorf("shim events: %w", err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://shim"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("shim %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("shim %s: decode response: %w", path, err)
	}
	return nil
}

func responseError(resp *http.Response) error {
	var e errorResponse
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = resp.Status
	}
	return &RemoteError{Msg: e.Error, notFound: resp.StatusCode == http.StatusNotFound}
}
