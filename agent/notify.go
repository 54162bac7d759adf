package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Environment of systemd's notify protocol (sd_notify(3)).
const (
	envNotifySocket = "NOTIFY_SOCKET"
	envWatchdogUsec = "WATCHDOG_USEC"
	envWatchdogPID  = "WATCHDOG_PID"
)

// statusEvery is how often the STATUS= line is brought up to date.
const statusEvery = 2 * time.Second

// notifier tells a service manager how the agent is doing: READY=1 once
// the pods that were running are adopted, STATUS= with a summary,
// WATCHDOG=1 while the reconcile loop turns, STOPPING=1 at shutdown. A nil
// notifier, or one without a socket, does nothing.
type notifier struct {
	log  *slog.Logger
	conn *net.UnixConn
	// watchdog is the service manager's watchdog timeout; zero when off.
	watchdog time.Duration
}

// newNotifier reads the protocol's environment and removes it, so that
// no shim or container inherits it. A socket that cannot be reached is
// logged and the agent runs without notifications.
func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	path := os.Getenv(envNotifySocket)
	usec, pid := os.Getenv(envWatchdogUsec), os.Getenv(envWatchdogPID)
	for _, k := range []string{envNotifySocket, envWatchdogUsec, envWatchdogPID} {
		os.Unsetenv(k)
	}
	if path == "" {
		return n
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("service manager notification socket unusable; running without notifications", "socket", path, "err", err)
		return n
	}
	n.conn = conn
	n.watchdog = watchdogTimeout(log, usec, pid)
	return n
}

// watchdogTimeout parses WATCHDOG_USEC, which applies to this process only
// if WATCHDOG_PID is unset or names it.
func watchdogTimeout(log *slog.Logger, usec, pid string) time.Duration {
	if usec == "" || (pid != "" && pid != strconv.Itoa(os.Getpid())) {
		return 0
	}
	us, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || us <= 0 {
		log.Warn("ignoring an invalid watchdog timeout", "env", envWatchdogUsec, "value", usec)
		return 0
	}
	return time.Duration(us) * time.Microsecond
}

// send writes one notification; failures are logged, never fatal.
func (n *notifier) send(state string) {
	if n.conn == nil {
		return
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		n.log.Warn("notify the service manager", "state", state, "err", err)
	}
}

// run notifies until ctx is done, then sends STOPPING=1 and closes the
// socket. ready is closed once the agent has adopted its pods; healthy
// reports whether the reconcile loop turns; status summarises the pods.
func (n *notifier) run(ctx context.Context, ready <-chan struct{}, healthy func(time.Time) error, status func() string) {
	if n == nil || n.conn == nil {
		return
	}
	defer n.conn.Close()
	n.send("STATUS=adopting running pods")
	statusTick := time.NewTicker(statusEvery)
	defer statusTick.Stop()
	var watchdogC <-chan time.Time
	if n.watchdog > 0 {
		// Half the timeout, as sd_watchdog_enabled(3) advises.
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		watchdogC = t.C
	}
	last := ""
	for {
		select {
		case <-ctx.Done():
			n.send("STOPPING=1\nSTATUS=stopping; pods keep running")
			return
		case <-ready:
			last = status()
			n.send("READY=1\nSTATUS=" + last)
			ready = nil
		case <-statusTick.C:
			if ready == nil {
				if s := status(); s != last {
					last = s
					n.send("STATUS=" + s)
				}
			}
		case now := <-watchdogC:
			// Only a loop that turns keeps the watchdog quiet: a wedged
			// agent is restarted, and adopts its pods again.
			if err := healthy(now); err != nil {
				n.log.Error("not pinging the service manager's watchdog", "err", err)
				continue
			}
			n.send("WATCHDOG=1")
		}
	}
}

// summary is the STATUS= line: pods by phase and rejected manifests.
func summary(pods PodLister, rejected rejectedLister) string {
	running, other := 0, 0
	for _, p := range pods.Pods() {
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Status.Phase == "Running" {
			running++
		} else {
			other++
		}
	}
	return fmt.Sprintf("%d pods running, %d not running, %d manifest files rejected", running, other, len(rejected.list()))
}
