package reconcile

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/peapod/peapod/manifests"
)

// loop is the state of Controller.Run's goroutine, which owns it: the latest
// desired and observed pods by key, and the workers' inputs derived from
// them.
type loop struct {
	c  *Controller
	wg *sync.WaitGroup

	// desired is nil until the first snapshot.
	desired map[string]*manifests.Pod
	// broken holds the manifest files currently in error.
	broken map[string]bool
	// refusedDir is the manifest directory while it is refused.
	refusedDir string
	firstSeen  map[types.UID]time.Time
	// observed is nil until the first successful list, seq that list's
	// sequence number.
	observed map[string][]*PodState
	seq      uint64
	uidKeys  map[types.UID]string
	// pokeKeys are the workers to poke after the next list; pokeAll pokes
	// every worker (a resync).
	pokeKeys map[string]bool
	pokeAll  bool

	listBackoff *backoff
	retry       clock.Timer
}

func newLoop(c *Controller, wg *sync.WaitGroup) *loop {
	return &loop{
		c:           c,
		wg:          wg,
		firstSeen:   make(map[types.UID]time.Time),
		uidKeys:     make(map[types.UID]string),
		pokeKeys:    make(map[string]bool),
		listBackoff: newBackoff(),
	}
}

// takeSnapshot adopts the latest snapshot. The first one triggers the first
// list; later ones go to the workers straight away.
func (l *loop) takeSnapshot(ctx context.Context) {
	l.c.mu.Lock()
	s := l.c.snapshot
	l.c.mu.Unlock()

	now := l.c.clock.Now()
	desired := make(map[string]*manifests.Pod, len(s.Pods))
	firstSeen := make(map[types.UID]time.Time, len(s.Pods))
	for _, p := range s.Pods {
		desired[p.Key()] = p
		firstSeen[p.UID()] = now
		if t, ok := l.firstSeen[p.UID()]; ok {
			firstSeen[p.UID()] = t
		}
	}
	l.broken = make(map[string]bool, len(s.Errors))
	for _, e := range s.Errors {
		l.broken[e.File] = true
	}
	l.refusedDir = s.RefusedDir
	l.desired, l.firstSeen = desired, firstSeen
	l.indexUIDs()
	if l.observed == nil {
		l.relist(ctx, false)
		return
	}
	l.distribute(ctx)
}

// pokeUID marks the worker of the pod with uid for a poke after the next
// list.
func (l *loop) pokeUID(uid types.UID) {
	if key, ok := l.uidKeys[uid]; ok {
		l.pokeKeys[key] = true
	}
}

// takeRelistKeys moves the keys of workers that asked for a list into
// pokeKeys.
func (l *loop) takeRelistKeys() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	for key := range l.c.relistKeys {
		l.pokeKeys[key] = true
	}
	clear(l.c.relistKeys)
}

// relist lists the runtime and hands every worker its observation, poking
// every worker when all is set. Nothing is listed before the first
// snapshot. A failed list is retried with back-off.
func (l *loop) relist(ctx context.Context, all bool) {
	l.pokeAll = l.pokeAll || all
	if l.desired == nil {
		return
	}
	seq := l.c.listSeq.Add(1)
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	pods, err := l.c.rt.ListPods(lctx)
	cancel()
	if err != nil {
		l.scheduleRetry(err)
		return
	}
	l.stopRetry()
	l.listBackoff.forget("")
	l.observed, l.seq = make(map[string][]*PodState), seq
	for _, p := range pods {
		key := p.Pod.Namespace + "/" + p.Pod.Name
		l.observed[key] = append(l.observed[key], p)
	}
	l.indexUIDs()
	// Before the workers get their input: one could sync before it is
	// expected otherwise.
	l.c.expectAdoption(slices.Collect(maps.Keys(l.observed)))
	l.distribute(ctx)
}

// indexUIDs maps the UID of every desired or observed pod to its key, for
// runtime events.
func (l *loop) indexUIDs() {
	clear(l.uidKeys)
	for key, p := range l.desired {
		l.uidKeys[p.UID()] = key
	}
	for key, states := range l.observed {
		for _, s := range states {
			l.uidKeys[s.UID()] = key
		}
	}
}

// distribute hands every key its latest input.
func (l *loop) distribute(ctx context.Context) {
	keys := make(map[string]bool)
	for key := range l.desired {
		keys[key] = true
	}
	for key := range l.observed {
		keys[key] = true
	}
	l.c.mu.Lock()
	for key := range l.c.workers {
		keys[key] = true
	}
	l.c.mu.Unlock()
	for key := range keys {
		l.c.deliver(ctx, l.wg, key, l.input(key), l.pokeAll || l.pokeKeys[key])
	}
	clear(l.pokeKeys)
	l.pokeAll = false
}

func (l *loop) input(key string) input {
	in := input{observed: l.observed[key], seq: l.seq}
	if p := l.desired[key]; p != nil {
		in.desired = p.Pod
		in.firstSeen = l.firstSeen[p.UID()]
		return in
	}
	for _, s := range in.observed {
		file := s.Pod.Annotations[manifests.AnnotationManifest]
		if l.broken[file] || (l.refusedDir != "" && filepath.Dir(file) == l.refusedDir) {
			in.keep = true
		}
	}
	return in
}

func (l *loop) scheduleRetry(err error) {
	now := l.c.clock.Now()
	l.listBackoff.next("", now, now)
	delay := l.listBackoff.delay("")
	l.c.log.Error("list pods", "err", err, "retry", delay)
	l.c.metrics.syncError("ListPodsError")
	l.stopRetry()
	l.retry = l.c.clock.NewTimer(delay)
}

// retryC returns the channel of the pending list retry, nil when there is
// none.
func (l *loop) retryC() <-chan time.Time {
	if l.retry == nil {
		return nil
	}
	return l.retry.C()
}

func (l *loop) stopRetry() {
	if l.retry != nil {
		l.retry.Stop()
		l.retry = nil
	}
}
