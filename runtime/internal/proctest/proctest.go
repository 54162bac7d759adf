// Package proctest holds helpers for tests that watch processes from the
// outside through /proc.
package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Disposition is what a process does with a signal, as /proc/PID/status
// shows it.
type Disposition string

const (
	// Caught: the process runs a handler (a shell's `trap 'cmd' SIG`).
	Caught Disposition = "SigCgt"
	// Ignored: the process ignores it (`trap '' SIG`).
	Ignored Disposition = "SigIgn"
)

// WaitSignal waits until process pid handles sig as d, for tests that
// signal a shell which sets a trap first. A sleep before the signal is not
// enough on a loaded machine; and a signal that comes before the trap finds
// the default action, which PID 1 of a pid namespace does not even take
// for SIGTERM: the test would wait out a whole grace period.
func WaitSignal(t testing.TB, pid int, sig syscall.Signal, d Disposition) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		ok, err := hasSignal(pid, sig, d)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d: %v not in %s after 10 s", pid, sig, d)
		}
	}
}

// hasSignal reports whether the d mask of process pid holds sig.
func hasSignal(pid int, sig syscall.Signal, d Disposition) (bool, error) {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, err
	}
	mask, err := statusMask(string(status), d)
	if err != nil {
		return false, fmt.Errorf("process %d: %w", pid, err)
	}
	return mask&(1<<(uint(sig)-1)) != 0, nil
}

// statusMask parses the hexadecimal signal mask on the d line of a
// /proc/PID/status text.
func statusMask(status string, d Disposition) (uint64, error) {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, string(d)+":"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no %s line in status", d)
}

// WaitSleeping waits until process pid is blocked (state S in
// /proc/PID/stat), e.g. a command that has exec'd and reached its sleep.
// The scheduler charges a task's CPU time to its cgroups when the task is
// dequeued or at a tick, so a test that reads a cgroup's usage while the
// task still runs on another CPU may see none.
func WaitSleeping(t testing.TB, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		st, err := state(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st == "S" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d: state %s, not sleeping, after 10 s", pid, st)
		}
	}
}

// state returns the state letter of process pid.
func state(pid int) (string, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	st, ok := statState(string(stat))
	if !ok {
		return "", fmt.Errorf("process %d: malformed stat %q", pid, stat)
	}
	return st, nil
}

// statState returns the state field of a /proc/PID/stat text. It follows
// the command name, which is in parentheses and may hold spaces and
// parentheses itself.
func statState(stat string) (string, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) == 0 {
		return "", false
	}
	return f[0], true
}
