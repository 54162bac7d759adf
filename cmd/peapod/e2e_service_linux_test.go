package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// notifySocket is a datagram socket standing in for systemd's.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, conn: conn, path: path}
}

// waitFor reads notifications until one starts with prefix, and returns it.
func (s *notifySocket) waitFor(prefix string) string {
	s.t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.conn.SetReadDeadline(deadline)
		n, err := s.conn.Read(buf)
		if err != nil {
			s.t.Fatalf("no %q notification: %v", prefix, err)
		}
		if msg := string(buf[:n]); strings.HasPrefix(msg, prefix) {
			return msg
		}
	}
}

// TestServiceNotify runs the agent as systemd would with Type=notify and a
// watchdog: READY=1 comes only once the pod left running by the previous
// agent is adopted, the watchdog is pinged, STOPPING=1 comes at shutdown.
func TestServiceNotify(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("svc.yaml", mfPod("svc", a.Image, "100000"))
	pod := a.waitPod("default/svc", "running", 30*time.Second, running)
	pid := a.mainPID(pod, "c")
	a.stop(syscall.SIGKILL)

	sd := newNotifySocket(t)
	a.env = []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=2000000"}
	a.start()
	ready := sd.waitFor("READY=1")
	// Ready means adopted: the status API shows the pod as it runs, with
	// the same process.
	out, code := runPeapod(t, "ps", "--state", a.cfg.State, "-o", "json")
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Items) != 1 {
		t.Fatalf("peapod ps right after READY=1: exit %d, %v:\n%s", code, err, out)
	}
	if p := list.Items[0]; p.UID != pod.UID || running(&p) != nil {
		t.Errorf("right after READY=1 the pod is %s %s, want %s running", p.UID, p.Status.Phase, pod.UID)
	}
	if !strings.Contains(ready, "STATUS=1 pods running") {
		t.Errorf("READY notification %q lacks the status", ready)
	}
	if got := a.mainPID(pod, "c"); got != pid {
		t.Errorf("main process %d after the restart, want %d: the pod was not adopted", got, pid)
	}
	sd.waitFor("WATCHDOG=1")
	// The shims the agent starts must not inherit the socket: with
	// NotifyAccess=all they could speak for the agent.
	a.writeManifest("new.yaml", mfPod("new", a.Image, "100001"))
	newPod := a.waitPod("default/new", "running", 30*time.Second, running)
	shimPID, err := os.ReadFile(filepath.Join(a.cfg.State, "pods", string(newPod.UID), "shim.pid"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile("/proc/" + strings.TrimSpace(string(shimPID)) + "/environ")
	if err != nil || strings.Contains(string(env), "NOTIFY_SOCKET") || strings.Contains(string(env), "WATCHDOG_USEC") {
		t.Errorf("the new pod's shim environment (%v) holds the notify protocol's variables: %q", err, env)
	}
	a.stop(syscall.SIGTERM)
	sd.waitFor("STOPPING=1")
}
