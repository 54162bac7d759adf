package shim

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newSpare starts a spare for pod dirs in a fresh directory and
// registers its Close, which is a no-op once it is bound.
func newSpare(t *testing.T) (*Spare, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pods := t.TempDir()
	sp, err := StartSpare(context.Background(), exe, pods)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sp.Close(); err != nil {
			t.Error(err)
		}
	})
	return sp, pods
}

// bindSpare binds sp to a new pod dir in pods and registers the shim's
// shutdown.
func bindSpare(t *testing.T, sp *Spare, pods string) (string, *Client) {
	t.Helper()
	dir := filepath.Join(pods, "pod")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := clientShutAtCleanup(t, dir)
	if err := sp.Bind(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	return dir, c
}

func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}

func TestSpareBindsAndServes(t *testing.T) {
	sp, pods := newSpare(t)
	pid := sp.PID()
	// Detached like a launched shim, and nothing of a pod before binding.
	if ppid, sid := procStat(t, pid, 1), procStat(t, pid, 3); ppid == os.Getpid() || sid != pid {
		t.Errorf("spare %d: parent %d, session %d; want a session leader that is not our child", pid, ppid, sid)
	}
	if got := cmdline(t, pid); len(got) != 5 || got[1] != Command || got[3] != spareFlag || got[4] != pods {
		t.Errorf("spare command line %q", got)
	}
	if entries, _ := os.ReadDir(pods); len(entries) != 0 {
		t.Errorf("spare wrote %v before it was bound", entries)
	}

	dir, c := bindSpare(t, sp, pods)
	if got := shimPID(t, dir); got != pid {
		t.Errorf("shim.pid %d, want the spare's %d", got, pid)
	}
	// Bound, it reads as a shim launched for its pod, in ps too.
	if got := cmdline(t, pid); len(got) != 4 || got[1] != Command || got[2] != stageServe || got[3] != dir {
		t.Errorf("bound spare command line %q, want [peapod %s %s %s]", got, Command, stageServe, dir)
	}
	// The runtime tells a pod's shim from a process that reused its PID.
	if !Serves(pid, dir) {
		t.Errorf("Serves(%d, %s) = false for the bound spare", pid, dir)
	}
	if Serves(pid, dir+"x") || Serves(os.Getpid(), dir) {
		t.Error("Serves true for another directory or another process")
	}
	st := startContainer(t, dir, c, "app", 0, "echo hello")
	if st.PID <= 0 {
		t.Fatalf("state %+v", st)
	}
	for i := 0; ; i++ {
		if _, err := ReadExit(AttemptDir(dir, "app", 0)); err == nil {
			break
		}
		if i == 3000 {
			t.Fatal("no exit record after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	log, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil || !strings.Contains(string(log), "shim serving") || !strings.Contains(string(log), "pod_dir="+dir) {
		t.Errorf("shim log %q, %v; want its serving line", log, err)
	}
	if err := sp.Close(); err != nil || !alive(pid) {
		t.Errorf("Close after Bind: %v, shim alive %v; want a no-op", err, alive(pid))
	}
}

// TestSpareExitsOnEOF drops the agent's end as an agent that exits or
// crashes does.
func TestSpareExitsOnEOF(t *testing.T) {
	sp, pods := newSpare(t)
	pidfd := sp.pidfd
	sp.conn.Close()
	if err := WaitExited(pidfd, 5*time.Second); err != nil {
		t.Fatalf("spare %d after EOF: %v", sp.PID(), err)
	}
	if entries, _ := os.ReadDir(pods); len(entries) != 0 {
		t.Errorf("dropped spare left %v", entries)
	}
	sp.conn = nil
	unix.Close(pidfd)
	sp.pidfd = -1
}

func TestSpareClose(t *testing.T) {
	sp, _ := newSpare(t)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(sp.PID()) {
		t.Fatalf("spare %d alive after Close", sp.PID())
	}
	if err := sp.Bind(context.Background(), "/nowhere"); err == nil {
		t.Fatal("closed spare bound")
	}
}

func TestSpareRefusesForeignDir(t *testing.T) {
	sp, _ := newSpare(t)
	dir := t.TempDir()
	if err := sp.Bind(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "not a pod directory") {
		t.Fatalf("bind to %s outside the spare's pod dirs: %v", dir, err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFile)); err == nil {
		t.Error("refused spare wrote a PID file")
	}
}

func TestSpareDeadBindFails(t *testing.T) {
	sp, pods := newSpare(t)
	if err := unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := WaitExited(sp.pidfd, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(pods, "pod")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sp.Bind(context.Background(), dir); err == nil {
		t.Fatal("dead spare bound")
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}
