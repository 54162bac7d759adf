// Package reconcile turns the desired pods of a manifests.Snapshot into
// running pods through a Runtime and a Network, and reports their status.
//
// It is level-triggered, after kubelet's pod workers. The Controller's main
// loop keeps the latest snapshot and the latest Runtime.ListPods, and hands
// each pod key (namespace/name) its share through a latest-wins mailbox to
// one worker goroutine per key, so a slow pod never holds up another. A
// worker merges what it is handed with what its own calls returned (a
// podView), then makes one pass: tear down every sandbox of the key that
// is not the pod to run, create the sandbox and its network, start the
// containers that restart policy and CrashLoopBackOff allow (decide), and
// publish the pod's status. Failures are retried with back-off, on a
// timer of the injected clock.
package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/peapod/peapod/manifests"
	"github.com/peapod/peapod/reconcile/probe"
)

const (
	defaultResync = 10 * time.Second
	// listTimeout bounds one Runtime.ListPods, so that a wedged runtime
	// shows up in Healthy instead of stalling the loop for ever.
	listTimeout = time.Minute
)

// Options configure a Controller.
type Options struct {
	Runtime Runtime
	// Network connects pod sandboxes; nil means no pod networking: pods get
	// no IPs.
	Network Network
	// Images makes images present before their containers start; nil
	// starts every container with its image as written.
	Images Images
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// Log defaults to discarding.
	Log *slog.Logger
	// Resync is how often the runtime is listed and every worker synced
	// even without events; zero means 10 s.
	Resync time.Duration
	// Metrics may be nil.
	Metrics *Metrics
	// Node describes the host in the pods' spec and status.
	Node Node
	// Disk measures pods' local storage to enforce emptyDir.sizeLimit and
	// ephemeral-storage limits; nil enforces neither.
	Disk DiskMeter
	// Exec runs the exec actions of probes and hooks; nil makes them
	// errors, which a probe throws away and a hook reports.
	Exec Execer
}

// Node is the host as pods see it, as a kubelet's node: spec.nodeName and
// status.hostIP(s).
type Node struct {
	Name string
	// IPs returns the host's addresses, the primary one first; nil means
	// none are known. It is called whenever a status is computed, so it
	// must be cheap.
	IPs func() []string
}

// Controller runs one worker goroutine per pod key (namespace/name), each
// driving its pods towards the latest snapshot. Its methods are safe for
// concurrent use; Run must be called once.
type Controller struct {
	rt      Runtime
	net     Network
	images  Images
	clock   clock.WithTicker
	log     *slog.Logger
	resync  time.Duration
	metrics *Metrics
	node    Node
	disk    DiskMeter
	exec    Execer
	// http is shared by the HTTP probes and hooks of every pod.
	http *probe.HTTP

	snapshotPoke chan struct{}
	relistPoke   chan struct{}
	// listSeq counts the ListPods calls started so far.
	listSeq atomic.Uint64
	// lastTurn is when the main loop last turned, in Unix nanoseconds.
	lastTurn atomic.Int64
	// afterTurn, set only by tests, runs after every main loop turn and
	// whenever a worker publishes status or exits.
	afterTurn func()

	mu         sync.Mutex
	ready      readiness
	snapshot   *manifests.Snapshot
	workers    map[string]*worker
	relistKeys map[string]bool
}

// New returns a Controller; it does nothing until Run.
func New(opts Options) *Controller {
	c := &Controller{
		rt:           opts.Runtime,
		net:          opts.Network,
		images:       opts.Images,
		clock:        opts.Clock,
		log:          opts.Log,
		resync:       cmp.Or(opts.Resync, defaultResync),
		metrics:      opts.Metrics,
		node:         opts.Node,
		disk:         opts.Disk,
		exec:         opts.Exec,
		http:         probe.NewHTTP(),
		snapshotPoke: make(chan struct{}, 1),
		relistPoke:   make(chan struct{}, 1),
		ready:        newReadiness(),
		workers:      make(map[string]*worker),
		relistKeys:   make(map[string]bool),
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.lastTurn.Store(c.clock.Now().UnixNano())
	c.metrics.attach(c.Pods)
	return c
}

// Update hands the controller a new desired state. It does not block; when
// snapshots arrive faster than the controller takes them, the latest wins.
func (c *Controller) Update(s manifests.Snapshot) {
	c.mu.Lock()
	c.snapshot = &s
	c.mu.Unlock()
	poke(c.snapshotPoke)
}

// Run reconciles until ctx is done and returns nil once every worker it
// started has stopped. It acts on nothing before the first snapshot and the
// first successful ListPods: pods that are running then are adopted as they
// are. Cancelling ctx stops the workers, not the pods.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	l := newLoop(c, &wg)
	defer l.stopRetry()
	ticker := c.clock.NewTicker(c.resync)
	defer ticker.Stop()
	for {
		c.lastTurn.Store(c.clock.Now().UnixNano())
		c.hook()
		select {
		case <-ctx.Done():
			return nil
		case <-c.snapshotPoke:
			l.takeSnapshot(ctx)
		case uid := <-c.rt.Events():
			l.pokeUID(uid)
			l.relist(ctx, false)
		case <-c.relistPoke:
			l.takeRelistKeys()
			l.relist(ctx, false)
		case <-ticker.C():
			l.relist(ctx, true)
		case <-l.retryC():
			l.relist(ctx, false)
		}
	}
}

// Pods returns a deep copy of the status of every pod the controller
// manages, desired ones and ones being torn down, sorted by namespace and
// name, a pod being torn down before its replacement.
func (c *Controller) Pods() []corev1.Pod {
	c.mu.Lock()
	workers := slices.Collect(maps.Values(c.workers))
	c.mu.Unlock()
	var out []corev1.Pod
	for _, w := range workers {
		out = append(out, w.pods()...)
	}
	slices.SortStableFunc(out, func(a, b corev1.Pod) int {
		return cmp.Or(
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(live(a), live(b)),
		)
	})
	return out
}

// Healthy returns an error when the main loop has not turned for longer
// than two resync periods and a list timeout.
func (c *Controller) Healthy(now time.Time) error {
	last := time.Unix(0, c.lastTurn.Load())
	if late := now.Sub(last); late > 2*c.resync+listTimeout {
		return fmt.Errorf("reconcile loop has not turned for %s", late.Round(time.Second))
	}
	return nil
}

// deliver hands a key's latest input to its worker, starting one when the
// key has something to do, and pokes it when asked to or when its desired
// pod changed.
func (c *Controller) deliver(ctx context.Context, wg *sync.WaitGroup, key string, in input, wake bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.workers[key]
	if w == nil {
		if in.desired == nil && len(in.observed) == 0 {
			return
		}
		w = newWorker(c, key)
		c.workers[key] = w
		wg.Go(func() { w.run(ctx) })
		wake = true
	}
	if w.set(in) || wake {
		poke(w.poke)
	}
}

// retire removes w, which has nothing left to do, unless an input arrived
// meanwhile. It reports whether w may exit.
func (c *Controller) retire(w *worker) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(w.poke) > 0 || w.desired() != nil {
		return false
	}
	delete(c.workers, w.key)
	return true
}

// requestRelist asks the main loop to list the runtime and then poke the
// worker of key, which just changed its pod.
func (c *Controller) requestRelist(key string) {
	c.mu.Lock()
	c.relistKeys[key] = true
	c.mu.Unlock()
	poke(c.relistPoke)
}

// live is 1 for a pod that is not being torn down, 0 for one that is.
func live(p corev1.Pod) int {
	if p.DeletionTimestamp != nil {
		return 0
	}
	return 1
}

func (c *Controller) hook() {
	if c.afterTurn != nil {
		c.afterTurn()
	}
}

// poke sends on a 1-buffered channel without blocking: a pending poke
// already says everything a new one would.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
