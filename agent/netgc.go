package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
)

// netGCInterval is how often the network state of vanished pods (veths,
// leases, host port rules) is collected, besides once at start.
const netGCInterval = 5 * time.Minute

// collectableNetwork is a network whose leftovers can be collected.
type collectableNetwork interface {
	reconcile.Network
	GC(ctx context.Context, live map[types.UID]bool) error
}

// guardedNetwork lets garbage collection run beside the controller without
// racing it: Setup and Teardown share a read lock, and collection takes the
// write lock, so while it lists the live pods and collects, no pod is half
// set up. A pod being set up always has a sandbox already (the controller
// creates it first), so it is in the runtime's list and stays.
type guardedNetwork struct {
	net collectableNetwork
	rt  reconcile.Runtime
	// keeper, when set, repairs the host network (keep), under mu too.
	keeper keeper

	mu     sync.RWMutex
	health podHealth
}

func (g *guardedNetwork) Setup(ctx context.Context, pod *corev1.Pod, netnsPath string) ([]string, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.net.Setup(ctx, pod, netnsPath)
}

func (g *guardedNetwork) Teardown(ctx context.Context, pod *corev1.Pod) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.net.Teardown(ctx, pod)
}

// collect removes the network state of every pod the runtime no longer has.
func (g *guardedNetwork) collect(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	pods, err := g.rt.ListPods(ctx)
	if err != nil {
		return fmt.Errorf("list pods for network garbage collection: %w", err)
	}
	live := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		live[p.UID()] = true
	}
	return g.net.GC(ctx, live)
}

// collectPeriodically runs collect every interval until ctx is done.
// Failures are logged: the next round retries.
func (g *guardedNetwork) collectPeriodically(ctx context.Context, log *slog.Logger, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := g.collect(ctx); err != nil && ctx.Err() == nil {
				log.Warn("network garbage collection", "err", err)
			}
		}
	}
}
