package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/agent"
)

// peapodBin is the binary under test, built once by TestMain (or given in
// PEAPOD_BIN, as hack/vmtest does).
var peapodBin string

// busyboxRootfs is a busybox root filesystem for the pods, built once by
// the first test that needs it (or given in PEAPOD_ROOTFS).
var busyboxRootfs = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("PEAPOD_ROOTFS"); dir != "" {
		return dir, nil
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("peapod-e2e-rootfs-%d", os.Getpid()))
	out, err := exec.Command("../../hack/mkrootfs.sh", dir).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("hack/mkrootfs.sh: %v\n%s", err, out)
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "peapod-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer os.RemoveAll(filepath.Join(os.TempDir(), fmt.Sprintf("peapod-e2e-rootfs-%d", os.Getpid())))
	peapodBin = os.Getenv("PEAPOD_BIN")
	if peapodBin == "" {
		peapodBin = filepath.Join(dir, "peapod")
		build := exec.Command("go", "build", "-o", peapodBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build peapod: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// runPeapod runs the binary under test and returns its combined output and
// exit code.
func runPeapod(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(peapodBin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("run peapod %v: %v", args, err)
	}
	return string(out), 0
}

// testAgent is one `peapod agent` process on temporary directories.
type testAgent struct {
	t    *testing.T
	cfg  agent.Config
	args []string
	// env is added to the agent's environment at every start.
	env     []string
	cmd     *exec.Cmd
	log     *syncBuffer
	metrics string // http://host:port
	done    chan struct{}
}

// syncBuffer is a bytes.Buffer safe for the agent's output goroutine and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestAgent prepares directories for an agent; extra flags are appended
// to every start. Cleanup stops the agent and, unless keepPods, removes every
// manifest and waits for the pods to go first.
func newTestAgent(t *testing.T, extra ...string) *testAgent {
	t.Helper()
	base := t.TempDir()
	a := &testAgent{t: t, cfg: agent.Config{
		Manifests: filepath.Join(base, "manifests"),
		Root:      filepath.Join(base, "root"),
		State:     filepath.Join(base, "state"),
		LogDir:    filepath.Join(base, "logs"),
	}}
	if err := os.MkdirAll(a.cfg.Manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	a.args = append([]string{"agent",
		"--manifests", a.cfg.Manifests, "--root", a.cfg.Root, "--state", a.cfg.State, "--log-dir", a.cfg.LogDir,
		"--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug",
	}, extra...)
	a.log = &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	return a
}

// start runs the agent and waits until /readyz answers.
func (a *testAgent) start() {
	a.t.Helper()
	// Only this run's log counts: a restarted agent logs its own address.
	since := len(a.log.String())
	a.cmd = exec.Command(peapodBin, a.args...)
	a.cmd.Env = append(os.Environ(), a.env...)
	a.cmd.Stdout = a.log
	a.cmd.Stderr = a.log
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(a.cmd, a.done)
	a.metrics = "http://" + a.waitLogField(since, "agent started", "metrics")
	// Ready: the pods left running by an earlier agent are adopted and
	// listed.
	a.eventually("readyz answers", 30*time.Second, func() error {
		resp, err := http.Get(a.metrics + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// stop sends SIGTERM (or SIGKILL) and waits for the agent to exit.
func (a *testAgent) stop(sig syscall.Signal) {
	a.t.Helper()
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
		a.t.Errorf("agent did not exit within 20s of %v", sig)
	}
	a.cmd = nil
}

// waitLogField waits for a JSON log line with msg, written after the first
// since bytes of the log, and returns its field.
func (a *testAgent) waitLogField(since int, msg, field string) string {
	a.t.Helper()
	var val string
	a.eventually("log line "+msg, 10*time.Second, func() error {
		sc := bufio.NewScanner(strings.NewReader(a.log.String()[since:]))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				val, _ = line[field].(string)
				return nil
			}
		}
		select {
		case <-a.done:
			a.t.Fatalf("agent exited before logging %q", msg)
		default:
		}
		return fmt.Errorf("not logged yet")
	})
	return val
}

// writeManifest writes a manifest atomically (temp file, rename), as an
// editor or a config-management tool does.
func (a *testAgent) writeManifest(name, content string) {
	a.t.Helper()
	tmp := filepath.Join(a.cfg.Manifests, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(a.cfg.Manifests, name)); err != nil {
		a.t.Fatal(err)
	}
}

func (a *testAgent) removeManifest(name string) {
	a.t.Helper()
	if err := os.Remove(filepath.Join(a.cfg.Manifests, name)); err != nil {
		a.t.Fatal(err)
	}
}

// pods asks the running agent for its pods.
func (a *testAgent) pods() []corev1.Pod {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := (&agent.Client{StateDir: a.cfg.State}).ListPods(ctx)
	if err != nil {
		a.t.Fatal(err)
	}
	return list.Items
}

// pod returns the agent's view of namespace/name, nil if it has none.
func (a *testAgent) pod(key string) *corev1.Pod {
	for _, p := range a.pods() {
		if p.Namespace+"/"+p.Name == key {
			return &p
		}
	}
	return nil
}

// waitPod waits until the pod exists and cond holds for it.
func (a *testAgent) waitPod(key, what string, timeout time.Duration, cond func(*corev1.Pod) error) *corev1.Pod {
	a.t.Helper()
	var got *corev1.Pod
	a.eventually(key+" "+what, timeout, func() error {
		got = a.pod(key)
		if got == nil {
			return fmt.Errorf("no pod %s", key)
		}
		return cond(got)
	})
	return got
}

// eventually retries f every 20 ms until it returns nil or timeout passes.
func (a *testAgent) eventually(what string, timeout time.Duration, f func() error) {
	a.t.Helper()
	eventually(a.t, what, timeout, f)
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
