package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod/peapod/manifests"
)

type staticPods []corev1.Pod

func (s staticPods) Pods() []corev1.Pod { return append([]corev1.Pod(nil), s...) }

func TestStatusAPI(t *testing.T) {
	dir := t.TempDir()
	l, err := listenStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("status socket mode %o, want 0600", perm)
	}
	pods := staticPods{{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "u1"}}}
	rejected := &rejectedFiles{}
	rejected.observe(manifests.Snapshot{
		Pods:   []*manifests.Pod{{Pod: &pods[0], File: "/m/web.yaml", Held: true}},
		Errors: []manifests.FileError{{File: "/m/web.yaml", Err: errors.New("/m/web.yaml: document 1: spec.contianers: unknown field")}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, slog.New(slog.DiscardHandler), &http.Server{Handler: statusHandler(pods, rejected, Info{LogDir: "/logs"})}, l)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	c := &Client{StateDir: dir}
	// A client that polls keeps no connection per call (in itself, and so
	// in the agent).
	before := goruntime.NumGoroutine()
	for range 100 {
		if _, err := c.ListPods(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); goruntime.NumGoroutine() > before+10; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after 100 calls, %d before: connections kept open", goruntime.NumGoroutine(), before)
		}
	}
	list, err := c.ListPods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list.Kind != "PodList" || list.APIVersion != "v1" || len(list.Items) != 1 || list.Items[0].Kind != "Pod" {
		t.Errorf("ListPods = %+v, want a v1 PodList of one Pod", list)
	}
	want := []RejectedFile{{File: "/m/web.yaml", Error: "/m/web.yaml: document 1: spec.contianers: unknown field", Kept: []string{"default/web"}}}
	if got, err := c.Rejected(ctx); err != nil || !cmp.Equal(got, want) {
		t.Errorf("Rejected = %+v, %v; want %+v", got, err, want)
	}
	if info, err := c.Info(ctx); err != nil || info.LogDir != "/logs" {
		t.Errorf("Info = %+v, %v; want log dir /logs", info, err)
	}
	pod, err := c.GetPod(ctx, "default", "web")
	if err != nil || pod.UID != "u1" {
		t.Errorf("GetPod = %v, %v; want pod u1", pod, err)
	}
	if _, err := c.GetPod(ctx, "default", "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "pod default/nope not found") {
		t.Errorf("GetPod(missing) error = %v, want not found", err)
	}
}

func TestClientWithoutAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := (&Client{StateDir: t.TempDir()}).ListPods(ctx)
	if err == nil || !strings.Contains(err.Error(), "is `peapod agent --state") {
		t.Errorf("error = %v, want a hint to start the agent", err)
	}
}
