package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSystemd is a notify socket standing in for systemd.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeSystemd{t: t, conn: conn, path: path}
}

// next returns the next datagram, failing the test after a generous wait.
func (s *fakeSystemd) next() string {
	s.t.Helper()
	buf := make([]byte, 4096)
	s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// waitFor reads notifications until one satisfies ok.
func (s *fakeSystemd) waitFor(what string, ok func(string) bool) string {
	s.t.Helper()
	for i := 0; i < 1000; i++ {
		if msg := s.next(); ok(msg) {
			return msg
		}
	}
	s.t.Fatalf("no notification %s", what)
	return ""
}

func TestNotifier(t *testing.T) {
	sd := newFakeSystemd(t)
	t.Setenv(envNotifySocket, sd.path)
	t.Setenv(envWatchdogUsec, "100000")
	t.Setenv(envWatchdogPID, "")
	n := newNotifier(slog.New(slog.DiscardHandler))
	for _, k := range []string{envNotifySocket, envWatchdogUsec, envWatchdogPID} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q left in the environment that shims inherit", k, v)
		}
	}
	if n.watchdog != 100*time.Millisecond {
		t.Errorf("watchdog %v, want 100ms", n.watchdog)
	}

	ready := make(chan struct{})
	var healthy atomic.Bool
	health := func(time.Time) error {
		if healthy.Load() {
			return nil
		}
		return errors.New("reconcile loop has not turned")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.run(ctx, ready, health, func() string { return "2 pods running" })
	}()

	if msg := sd.next(); msg != "STATUS=adopting running pods" {
		t.Errorf("first notification %q, want the adopting status", msg)
	}
	// Unhealthy: no watchdog ping may come before READY, which we hold.
	sd.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := sd.conn.Read(make([]byte, 64)); err == nil {
		t.Errorf("notification while the loop is wedged: %d bytes", n)
	}
	close(ready)
	if msg := sd.next(); msg != "READY=1\nSTATUS=2 pods running" {
		t.Errorf("notification %q, want READY=1 with the status", msg)
	}
	healthy.Store(true)
	sd.waitFor("WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	cancel()
	sd.waitFor("STOPPING=1", func(m string) bool { return strings.HasPrefix(m, "STOPPING=1") })
	<-done
}

func TestNotifierWithoutSocket(t *testing.T) {
	t.Setenv(envNotifySocket, filepath.Join(t.TempDir(), "missing.sock"))
	n := newNotifier(slog.New(slog.DiscardHandler))
	// Runs (and returns at once) without a usable socket.
	n.run(context.Background(), nil, nil, nil)
	var none *notifier
	none.run(context.Background(), nil, nil, nil)
}
