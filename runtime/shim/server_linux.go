package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/logs"
)

// logDrainTimeout bounds how long the shim waits, after a container's init
// exited, for its output pipes to close. Killing a pid namespace's init
// kills everything in it, so only a process outside the container that was
// handed the pipe can hold it open longer.
const logDrainTimeout = 2 * time.Second

// termGrace is the grace period containers get when the shim itself is
// asked to stop by a signal (e.g. at host shutdown) rather than by the
// agent.
const termGrace = 5 * time.Second

// Launcher starts containers for the shim.
type Launcher interface {
	// Launch starts the container that spec describes with stdout and
	// stderr as its output; ctx bounds the start only. The shim is the container's parent and reaps
	// it through Launched.Process.Wait.
	Launch(ctx context.Context, spec json.RawMessage, stdout, stderr *os.File) (*Launched, error)
}

// Process is a container's init as its parent sees it: *os.Process and
// *attempt.Process are both one. Signal must be safe to call after the
// process was reaped (both signal through a pidfd).
type Process interface {
	Wait() (*os.ProcessState, error)
	Signal(os.Signal) error
}

// Launched is a started container.
type Launched struct {
	// PID is the host PID of the container's init.
	PID     int
	Process Process
	// OOMKilled, when set, reports whether the container's memory cgroup
	// recorded an OOM kill since the launch.
	OOMKilled func() (bool, error)
	// Release, when set, frees what the launch holds (e.g. cgroup
	// descriptors) once the container has exited.
	Release func()
	// Exec, when set, starts a further process in the running container
	// (peapod exec); the shim reaps it through its Wait.
	Exec func(ctx context.Context, opts *container.ExecOptions) (*container.ExecProcess, error)
}

// server is the shim's container supervisor and its HTTP API. It is the
// parent of every container it starts, and reaps the orphans that land on
// the shim without stealing its containers from their Process.Wait.
type server struct {
	dir    string
	launch Launcher
	log    *slog.Logger
	quit   chan struct{}
	// supervisors counts the goroutines that wait for container exits.
	supervisors sync.WaitGroup
	// execs counts the exec sessions, which outlive their HTTP request
	// (see handleExec); Add only under mu while not quitting.
	execs sync.WaitGroup

	// launching is read-held from a container's launch until its PID is
	// in owned, so the orphan reaper, which write-holds it, cannot take a
	// container's exit (or a failed init stage's) from its Wait. Launches
	// of different containers run concurrently.
	launching sync.RWMutex

	mu         sync.Mutex
	owned      map[int]bool
	containers map[string]*attempt
	// starting holds the containers being started; the channel closes when
	// the start ends.
	starting map[string]chan struct{}
	subs     map[chan Event]struct{}
	quitting bool
}

// attempt is the latest attempt of one container. state and launched are
// set before the container is published; exit is set under server.mu
// before done is closed.
type attempt struct {
	state    State
	launched *Launched
	writer   *logs.Writer
	done     chan struct{}
	exit     *Exit
}

// newServer returns a server for the pod whose state directory is dir.
func newServer(dir string, launch Launcher, log *slog.Logger) *server {
	return &server{
		dir: dir, launch: launch, log: log, quit: make(chan struct{}),
		owned: map[int]bool{}, containers: map[string]*attempt{},
		starting: map[string]chan struct{}{}, subs: map[chan Event]struct{}{},
	}
}

// Serve reaps children and answers requests on ln until a shutdown request
// has stopped every container. On SIGTERM or SIGINT, or if the listener
// fails (nothing could stop the containers any more), Serve stops them
// itself, so that their exits are recorded. It returns after every
// goroutine it started, and every supervisor, has ended.
func (s *server) Serve(ln net.Listener) error {
	// SIGCHLD must be caught before the first container can exit.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// A sweep for exits from before SIGCHLD was caught, done before the
	// first request: the reaper write-holds launching, so a sweep racing
	// with the first starts would make them wait behind it, one after
	// another.
	s.reapOrphans()
	wg.Go(func() { s.reapLoop(ctx, sigs) })
	srv := &http.Server{Handler: s.handler()}
	errc := make(chan error, 1)
	wg.Go(func() { errc <- srv.Serve(ln) })
	var err error
	select {
	case <-s.quit:
	case sig := <-term:
		s.log.Info("shim signalled; stopping every container", "signal", sig)
		err = s.stopAll(ctx, termGrace)
	case err = <-errc:
		s.log.Error("shim API failed; stopping every container", "err", err)
		err = errors.Join(err, s.stopAll(ctx, 0))
	}
	shutCtx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	if serr := srv.Shutdown(shutCtx); serr != nil {
		err = errors.Join(err, serr)
	}
	s.supervisors.Wait()
	// Exec'd processes died with their containers; their sessions end.
	s.execs.Wait()
	cancel()
	wg.Wait()
	return err
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /start", s.handleStart)
	mux.HandleFunc("POST /stop", s.handleStop)
	mux.HandleFunc("GET /containers", s.handleContainers)
	mux.HandleFunc("GET /events", s.handleEvents)
	mux.HandleFunc("POST /shutdown", s.handleShutdown)
	mux.HandleFunc("POST /exec", s.handleExec)
	return mux
}

func (s *server) handleStart(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode start request: %w", err))
		return
	}
	st, err := s.start(r.Context(), &req)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSONResponse(w, st)
}

func (s *server) handleStop(w http.ResponseWriter, r *http.Request) {
	var req stopRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode stop request: %w", err))
		return
	}
	s.mu.Lock()
	c := s.containers[req.Name]
	s.mu.Unlock()
	if c == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("container %q", req.Name))
		return
	}
	e, err := s.stop(r.Context(), c, req.Grace)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSONResponse(w, e)
}

func (s *server) handleContainers(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]Status, 0, len(s.containers))
	for _, c := range s.containers {
		out = append(out, Status{State: c.state, Exit: c.exit})
	}
	s.mu.Unlock()
	writeJSONResponse(w, out)
}

// handleEvents streams one JSON line per exit until the client goes away
// or the shim shuts down.
func (s *server) handleEvents(w http.ResponseWriter, r *http.Request) {
	ch := make(chan Event, 16)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		case ev := <-ch:
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// handleShutdown stops every container, answers, then ends Serve.
func (s *server) handleShutdown(w http.ResponseWriter, r *http.Request) {
	var req shutdownRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode shutdown request: %w", err))
		return
	}
	if err := s.stopAll(r.Context(), req.Grace); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
}

// stopAll refuses further starts and stops every container concurrently.
func (s *server) stopAll(ctx context.Context, grace time.Duration) error {
	s.mu.Lock()
	s.quitting = true
	all := make([]*attempt, 0, len(s.containers))
	for _, c := range s.containers {
		all = append(all, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, c := range all {
		wg.Go(func() { _, errs[i] = s.stop(ctx, c, grace) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func writeJSONResponse(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorResponse{Error: err.Error()})
}
