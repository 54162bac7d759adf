package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod/peapod/runtime/internal/proctest"
)

// These tests run the real shim (this test binary re-executed) with a
// launcher that starts plain processes, so they need no root.

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Command {
		if err := run(os.Args[2:], func(string, *slog.Logger) Launcher { return processLauncher{} }); err != nil {
			fmt.Fprintln(os.Stderr, "test shim:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// processLauncher runs spec, a JSON argv, as a plain child process.
type processLauncher struct{}

func (processLauncher) Launch(ctx context.Context, spec json.RawMessage, stdout, stderr *os.File) (*Launched, error) {
	var argv []string
	if err := json.Unmarshal(spec, &argv); err != nil {
		return nil, err
	}
	if len(argv) == 4 && argv[0] == rendezvousArg {
		if err := rendezvous(argv[1], argv[2]); err != nil {
			return nil, err
		}
		argv = argv[3:]
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Files: []*os.File{devnull, stdout, stderr},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return nil, err
	}
	return &Launched{PID: p.Pid, Process: p}, nil
}

// rendezvousArg, first in a spec, makes the launch wait for others:
// [rendezvousArg, DIR, N, PROGRAM] launches PROGRAM only once N launches
// have entered DIR at the same time, and fails after 2s.
const rendezvousArg = "@rendezvous"

func rendezvous(dir, n string) error {
	want, err := strconv.Atoi(n)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "in-")
	if err != nil {
		return err
	}
	f.Close()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if ents, _ := os.ReadDir(dir); len(ents) >= want {
			return nil
		}
	}
	return fmt.Errorf("the other %d launches never came while this one ran", want-1)
}

// clientShutAtCleanup returns a client of the shim of dir that shuts the
// shim down, and waits for it to go, when the test ends.
func clientShutAtCleanup(t testing.TB, dir string) *Client {
	c := NewClient(dir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx, 0)
		c.Close()
		waitShimGone(t, dir)
	})
	return c
}

// startShim launches a shim on a fresh pod dir and registers its shutdown.
func startShim(t testing.TB) (string, *Client) {
	t.Helper()
	dir := t.TempDir()
	c := clientShutAtCleanup(t, dir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := Launch(context.Background(), exe, dir); err != nil {
		t.Fatal(err)
	}
	return dir, c
}

func shimPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// alive reports whether pid runs; a zombie waiting for init to reap it
// (the shim is not our child) counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// waitShimGone waits until the shim process recorded in dir has exited.
func waitShimGone(t testing.TB, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil {
		return
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for i := 0; i < 3000 && pid > 0; i++ {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, LogFile))
	t.Errorf("shim %d still alive; its log:\n%s", pid, log)
}

func argv(args ...string) json.RawMessage {
	b, _ := json.Marshal(args)
	return b
}

func startContainer(t *testing.T, dir string, c *Client, name string, attempt int, script string) *State {
	t.Helper()
	st, err := c.Start(context.Background(), &StartRequest{
		Name: name, Attempt: attempt, Spec: argv("/bin/sh", "-c", script),
		LogPath: filepath.Join(dir, "logs", name, strconv.Itoa(attempt)+".log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestShimRecordsExitAndLogs(t *testing.T) {
	dir, c := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := make(chan Event, 4)
	evCtx, evCancel := context.WithCancel(ctx)
	evDone := make(chan error, 1)
	go func() { evDone <- c.Events(evCtx, nil, func(e Event) { events <- e }) }()
	defer func() { evCancel(); <-evDone }()

	// The shim is detached: not our child, in a session of its own.
	pid := shimPID(t, dir)
	if ppid, sid := procStat(t, pid, 1), procStat(t, pid, 3); ppid == os.Getpid() || sid != pid {
		t.Errorf("shim %d: parent %d, session %d; want a session leader that is not our child", pid, ppid, sid)
	}
	if fi, err := os.Stat(filepath.Join(dir, SocketFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("shim socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	st := startContainer(t, dir, c, "app", 0, "echo out; echo err >&2; exit 7")
	if st.PID <= 0 || st.Attempt != 0 {
		t.Fatalf("state %+v", st)
	}
	select {
	case ev := <-events:
		if ev != (Event{Name: "app", Attempt: 0}) {
			t.Fatalf("event %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no exit event")
	}
	// The record is on disk before the event.
	e, err := ReadExit(AttemptDir(dir, "app", 0))
	if err != nil {
		t.Fatal(err)
	}
	if e.ExitCode != 7 || e.Signal != 0 || e.FinishedAt.IsZero() {
		t.Fatalf("exit %+v", e)
	}
	rec, err := ReadState(AttemptDir(dir, "app", 0))
	if err != nil || rec.PID != st.PID {
		t.Fatalf("state record %+v, %v", rec, err)
	}
	log, err := os.ReadFile(filepath.Join(dir, "logs", "app", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" stdout F out\n", " stderr F err\n"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log %q lacks %q", log, want)
		}
	}
	// Starting the same attempt again is idempotent; the next one starts.
	if again := startContainer(t, dir, c, "app", 0, "exit 1"); again.PID != st.PID {
		t.Fatalf("restart of attempt 0 started pid %d", again.PID)
	}
	next := startContainer(t, dir, c, "app", 1, "exec sleep 100")
	if next.PID == st.PID {
		t.Fatal("attempt 1 has attempt 0's pid")
	}
	all, err := c.Containers(ctx)
	if err != nil || len(all) != 1 || all[0].Attempt != 1 || all[0].Exit != nil {
		t.Fatalf("containers %+v, %v", all, err)
	}
}

func TestShimStopGrace(t *testing.T) {
	dir, c := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	polite := startContainer(t, dir, c, "polite", 0, `trap 'exit 3' TERM; while :; do sleep 0.05; done`)
	stubborn := startContainer(t, dir, c, "stubborn", 0, `trap '' TERM; while :; do sleep 0.05; done`)
	proctest.WaitSignal(t, polite.PID, syscall.SIGTERM, proctest.Caught)
	proctest.WaitSignal(t, stubborn.PID, syscall.SIGTERM, proctest.Ignored)

	t0 := time.Now()
	e, err := c.Stop(ctx, "polite", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// 3 comes from its TERM trap; a kill after the grace would be 137.
	if e.ExitCode != 3 {
		t.Fatalf("polite: exit %+v after %v", e, time.Since(t0))
	}
	t0 = time.Now()
	e, err = c.Stop(ctx, "stubborn", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if e.Signal != int(syscall.SIGKILL) || e.ExitCode != 137 || time.Since(t0) < 300*time.Millisecond {
		t.Fatalf("stubborn: exit %+v after %v", e, time.Since(t0))
	}
	if _, err := c.Stop(ctx, "nobody", 0); err == nil {
		t.Fatal("stop of an unknown container succeeded")
	}
}

func TestShimShutdownEndsEventsCleanly(t *testing.T) {
	dir, c := startShim(t)
	startContainer(t, dir, c, "app", 0, "exec sleep 100")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evDone := make(chan error, 1)
	connected := make(chan struct{})
	go func() { evDone <- c.Events(ctx, func() { close(connected) }, func(Event) {}) }()
	select {
	case <-connected:
	case err := <-evDone:
		t.Fatalf("event stream: %v", err)
	}
	if err := c.Shutdown(ctx, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-evDone:
		if err != nil {
			t.Fatalf("events ended with %v, want nil: the shim exited on request", err)
		}
	case <-ctx.Done():
		t.Fatal("event stream outlived the shim")
	}
	waitShimGone(t, dir)
}

func TestShimDeathKillsContainers(t *testing.T) {
	dir, c := startShim(t)
	st := startContainer(t, dir, c, "app", 0, "exec sleep 100")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evDone := make(chan error, 1)
	connected := make(chan struct{})
	go func() { evDone <- c.Events(ctx, func() { close(connected) }, func(Event) {}) }()
	select {
	case <-connected:
	case err := <-evDone:
		t.Fatalf("event stream: %v", err)
	}

	if err := unix.Kill(shimPID(t, dir), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-evDone:
		// A cut stream, not a clean end, tells the runtime that the shim
		// died rather than exited on request.
		if err == nil || ctx.Err() != nil {
			t.Fatalf("events ended with %v, want the stream cut short", err)
		}
	case <-ctx.Done():
		t.Fatal("event stream outlived the shim")
	}
	waitShimGone(t, dir)
	for i := 0; alive(st.PID); i++ {
		if i == 3000 {
			t.Fatalf("container %d outlived its shim by 30s", st.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Ping(ctx); err == nil {
		t.Fatal("dead shim answers")
	}
}

func TestShimReapsOrphans(t *testing.T) {
	dir, c := startShim(t)
	// The shell leaves a background child that outlives it and is
	// re-parented to the shim, which must reap it.
	st := startContainer(t, dir, c, "app", 0, "sleep 0.2 & exit 0")
	shim := shimPID(t, dir)
	// Reaped, the shell and its child leave the shim without children; one
	// left unreaped stays its zombie child. The shim records the shell's
	// exit after reaping it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		kids := children(t, shim)
		_, err := ReadExit(AttemptDir(dir, "app", 0))
		if len(kids) == 0 && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after its container (%d) started: shim %d has children %v; exit record: %v", st.PID, shim, kids, err)
		}
	}
}

// procStat returns field i (0 = state) after the command of /proc/PID/stat.
func procStat(t *testing.T, pid, i int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	v, err := strconv.Atoi(f[i])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// children lists the child processes of pid as "PID (STATE)".
func children(t *testing.T, pid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// stat: pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, e.Name()+" ("+f[0]+")")
		}
	}
	return kids
}

// BenchmarkLaunch measures how long Launch takes until the shim answers
// (median as launch-ms: a busy machine makes the mean noisy).
func BenchmarkLaunch(b *testing.B) {
	var took []time.Duration
	for b.Loop() {
		t0 := time.Now()
		startShim(b)
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "launch-ms")
}

func TestShimSIGTERMRecordsExits(t *testing.T) {
	dir, c := startShim(t)
	polite := startContainer(t, dir, c, "polite", 0, `trap 'exit 5' TERM; while :; do sleep 0.05; done`)
	proctest.WaitSignal(t, polite.PID, syscall.SIGTERM, proctest.Caught)
	if err := unix.Kill(shimPID(t, dir), unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitShimGone(t, dir)
	e, err := ReadExit(AttemptDir(dir, "polite", 0))
	if err != nil {
		t.Fatal(err)
	}
	if e.ExitCode != 5 {
		t.Errorf("exit %+v, want code 5", e)
	}
}

// A pod's containers start concurrently: the shim launches them in
// parallel, not one after another.
func TestShimLaunchesConcurrently(t *testing.T) {
	dir, c := startShim(t)
	meet := t.TempDir()
	const n = 3
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("c%d", i)
			_, errs[i] = c.Start(context.Background(), &StartRequest{
				Name: name, Spec: argv(rendezvousArg, meet, strconv.Itoa(n), "/bin/true"),
				LogPath: filepath.Join(dir, "logs", name, "0.log"),
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("start c%d: %v", i, err)
		}
	}
}
