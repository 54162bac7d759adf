package agent

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
)

// gcRuntime lists fixed pods; list blocks until release is closed.
type gcRuntime struct {
	reconcile.Runtime
	uids    []types.UID
	listing chan struct{}
	release chan struct{}
}

func (r *gcRuntime) ListPods(ctx context.Context) ([]*reconcile.PodState, error) {
	close(r.listing)
	<-r.release
	var out []*reconcile.PodState
	for _, uid := range r.uids {
		out = append(out, &reconcile.PodState{Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}}})
	}
	return out, nil
}

// gcNetwork records GC's live set and the order of calls.
type gcNetwork struct {
	mu    sync.Mutex
	calls []string
	live  map[types.UID]bool
}

func (n *gcNetwork) record(call string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, call)
}

func (n *gcNetwork) Setup(context.Context, *corev1.Pod, string) ([]string, error) {
	n.record("setup")
	return []string{"10.85.0.2"}, nil
}

func (n *gcNetwork) Teardown(context.Context, *corev1.Pod) error {
	n.record("teardown")
	return nil
}

func (n *gcNetwork) GC(_ context.Context, live map[types.UID]bool) error {
	n.record("gc")
	n.mu.Lock()
	defer n.mu.Unlock()
	n.live = maps.Clone(live)
	return nil
}

// TestGuardedNetworkCollect checks that collection spares exactly the pods
// the runtime lists, and that a Setup arriving while it lists waits for it:
// otherwise the new pod's lease could be collected as stale.
func TestGuardedNetworkCollect(t *testing.T) {
	rt := &gcRuntime{uids: []types.UID{"a", "b"}, listing: make(chan struct{}), release: make(chan struct{})}
	net := &gcNetwork{}
	g := &guardedNetwork{net: net, rt: rt}

	collected := make(chan error, 1)
	go func() { collected <- g.collect(context.Background()) }()
	<-rt.listing
	setupDone := make(chan struct{})
	go func() {
		g.Setup(context.Background(), &corev1.Pod{}, "/ns")
		close(setupDone)
	}()
	select {
	case <-setupDone:
		t.Fatal("Setup ran while collection was listing pods")
	case <-time.After(50 * time.Millisecond):
	}
	close(rt.release)
	if err := <-collected; err != nil {
		t.Fatal(err)
	}
	<-setupDone

	if want := []string{"gc", "setup"}; !slices.Equal(net.calls, want) {
		t.Errorf("calls %v, want %v", net.calls, want)
	}
	if want := map[types.UID]bool{"a": true, "b": true}; !maps.Equal(net.live, want) {
		t.Errorf("GC live set %v, want %v", net.live, want)
	}
}
