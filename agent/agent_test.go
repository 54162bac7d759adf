package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
)

// memRuntime is an in-memory reconcile.Runtime: sandboxes and containers
// that exist only as records, enough to drive the agent's wiring.
type memRuntime struct {
	mu   sync.Mutex
	pods map[types.UID]*reconcile.PodState
}

func (r *memRuntime) ListPods(context.Context) ([]*reconcile.PodState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*reconcile.PodState
	for _, p := range r.pods {
		c := *p
		c.Containers = append([]reconcile.ContainerState(nil), p.Containers...)
		out = append(out, &c)
	}
	return out, nil
}

func (r *memRuntime) CreateSandbox(_ context.Context, pod *corev1.Pod) (*reconcile.PodState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pods[pod.UID]; ok {
		return p, nil
	}
	p := &reconcile.PodState{Pod: pod.DeepCopy(), Ready: true, CreatedAt: time.Now()}
	r.pods[pod.UID] = p
	return p, nil
}

func (r *memRuntime) StartContainer(_ context.Context, req reconcile.StartRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pods[req.UID]
	p.Containers = append(p.Containers, reconcile.ContainerState{
		Name: req.Container, Attempt: req.Attempt, ID: "mem://" + req.Container,
		Phase: reconcile.ContainerRunning, StartedAt: time.Now(),
	})
	return nil
}

func (r *memRuntime) StopContainer(context.Context, types.UID, string, time.Duration) error {
	return nil
}

func (r *memRuntime) RemovePod(_ context.Context, uid types.UID, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, uid)
	return nil
}

func (r *memRuntime) Events() <-chan types.UID { return nil }

// TestRunWiring runs the agent proper on temp dirs with an in-memory
// runtime: a dropped manifest becomes a running pod in the status API,
// /healthz answers, /metrics carries the agent's series, a broken file is
// counted, and cancelling the context stops everything.
func TestRunWiring(t *testing.T) {
	base := t.TempDir()
	cfg := DefaultConfig()
	cfg.Manifests, cfg.State = filepath.Join(base, "m"), filepath.Join(base, "s")
	cfg.MetricsAddr = "127.0.0.1:0"
	for _, d := range []string{cfg.Manifests, cfg.State} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, log, parts{runtime: &memRuntime{pods: map[types.UID]*reconcile.PodState{}}, registry: newRegistry()})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(cfg.Manifests, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"+
		"  - {name: app, image: \"rootfs:/img\", command: [sleep, \"1\"]}\n")
	write("bad.yaml", "apiVersion: v1\nkind: Pod\nspec: {contianers: []}\n")

	client := &Client{StateDir: cfg.State}
	waitUntil(t, "pod default/web running", func() bool {
		pod, err := client.GetPod(ctx, "default", "web")
		return err == nil && pod.Status.Phase == corev1.PodRunning
	})
	addr := logField(t, logs, "agent started", "metrics")
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ok",
		"/metrics": `peapod_manifest_errors_total{file="` + filepath.Join(cfg.Manifests, "bad.yaml") + `"} 1`,
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logField returns field of the first JSON log line whose msg is msg.
func logField(t *testing.T, logs *lockedBuffer, msg, field string) string {
	t.Helper()
	var val string
	waitUntil(t, "log line "+msg, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `"msg":"`+msg+`"`) {
				_, rest, _ := strings.Cut(line, `"`+field+`":"`)
				val, _, _ = strings.Cut(rest, `"`)
				return val != ""
			}
		}
		return false
	})
	return val
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
