package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/peapod/peapod/reconcile/probe"
)

// attemptKey names one attempt of one container of a pod.
type attemptKey struct {
	uid     types.UID
	name    string
	attempt int
}

// probeKey names one probe of one container attempt: a new attempt gets
// new probes, as a new container ID does in kubelet.
type probeKey struct {
	attemptKey
	kind probeKind
}

// prober runs the probes of one pod worker's containers, one goroutine per
// probe as kubelet does, so that a target that hangs holds up only its own
// probe, for at most its timeout. The pod worker goroutine calls sync,
// results and close; the probe goroutines only publish results and poke
// the worker.
type prober struct {
	clock clock.WithTicker
	log   *slog.Logger
	exec  Execer
	http  *probe.HTTP
	// poke wakes the pod worker when a result changes.
	poke func()
	// ctx ends every probe goroutine at close; wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the pod worker goroutine.
	running map[probeKey]context.CancelFunc
	// killed holds the attempts a liveness or startup failure was acted on.
	killed map[attemptKey]bool

	mu      sync.Mutex
	results map[probeKey]probeResult
}

func newProber(c *Controller, log *slog.Logger, poke func()) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	return &prober{
		clock: c.clock, log: log, exec: c.exec, http: c.http, poke: poke,
		ctx: ctx, cancel: cancel,
		running: make(map[probeKey]context.CancelFunc),
		killed:  make(map[attemptKey]bool),
		results: make(map[probeKey]probeResult),
	}
}

// close stops every probe and waits for their goroutines.
func (p *prober) close() {
	p.cancel()
	p.wg.Wait()
}

// sync runs the probes of every running container attempt of the pod and
// stops those of attempts that no longer run. Containers are init
// containers (whose only probes a sidecar has) and app containers.
func (p *prober) sync(v *podView, host string) {
	want := make(map[probeKey]bool)
	for _, c := range allContainers(v.pod) {
		cv := v.containers[c.Name]
		if cv == nil || cv.latest == nil || cv.latest.Phase != ContainerRunning || !v.deletingFrom.IsZero() {
			continue
		}
		a := attemptKey{uid: v.pod.UID, name: c.Name, attempt: cv.latest.Attempt}
		target := actionTarget{uid: v.pod.UID, container: c, host: host, exec: p.exec, http: p.http}
		for _, kind := range []probeKind{startupProbe, livenessProbe, readinessProbe} {
			spec := probeOf(c, kind)
			if spec == nil {
				continue
			}
			k := probeKey{a, kind}
			want[k] = true
			if _, ok := p.running[k]; !ok {
				p.start(k, &probeState{kind: kind, spec: spec}, target, cv.latest.StartedAt, c.StartupProbe != nil)
			}
		}
	}
	for k, cancel := range p.running {
		if !want[k] && k.uid == v.pod.UID {
			p.stop(k, cancel)
		}
	}
}

// forget stops the probes of a pod that is gone.
func (p *prober) forget(uid types.UID) {
	for k, cancel := range p.running {
		if k.uid == uid {
			p.stop(k, cancel)
		}
	}
	for a := range p.killed {
		if a.uid == uid {
			delete(p.killed, a)
		}
	}
}

func (p *prober) stop(k probeKey, cancel context.CancelFunc) {
	cancel()
	delete(p.running, k)
	p.mu.Lock()
	delete(p.results, k)
	p.mu.Unlock()
}

func (p *prober) start(k probeKey, s *probeState, t actionTarget, startedAt time.Time, hasStartup bool) {
	ctx, cancel := context.WithCancel(p.ctx)
	p.running[k] = cancel
	p.wg.Go(func() {
		defer cancel()
		p.run(ctx, k, s, t, startedAt, hasStartup)
	})
}

// run probes on every period tick until ctx ends, or until a startup probe
// succeeded. Kubelet probes at once and then every period, skipping ticks
// the state machine says are not due.
func (p *prober) run(ctx context.Context, k probeKey, s *probeState, t actionTarget, startedAt time.Time, hasStartup bool) {
	log := p.log.With("container", k.name, "attempt", k.attempt, "probe", k.kind)
	for {
		started := !hasStartup || p.result(probeKey{k.attemptKey, startupProbe}) == success
		if k.kind == startupProbe && started {
			return
		}
		if s.due(p.clock.Since(startedAt), started) {
			p.probeOnce(ctx, log, k, s, t)
		}
		tick := p.clock.NewTimer(untilTick(p.clock.Now(), period(s.spec)))
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-tick.C():
		}
	}
}

// untilTick returns how long until the next multiple of period on the
// wall clock. The probes that share a period tick together, so the agent
// wakes once a period for all of them rather than once per probe: waking
// an idle process costs more than the probe itself, and aligned probes
// cost a fifth of the CPU of spread ones (docs/benchmarks.md). Only the
// first interval after a container starts is shorter than the period.
func untilTick(now time.Time, period time.Duration) time.Duration {
	return now.Truncate(period).Add(period).Sub(now)
}

func (p *prober) probeOnce(ctx context.Context, log *slog.Logger, k probeKey, s *probeState, t actionTarget) {
	r, out, err := t.probe(ctx, &s.spec.ProbeHandler, probeTimeout(s.spec))
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		// Kubelet throws away a probe that could not run.
		log.Warn("probe errored", "err", err)
		return
	}
	raw := success
	if r == probe.Failure {
		raw = failure
		log.Info("probe failed", "output", truncate(out, 256))
	}
	pub, ok := s.observe(raw)
	if !ok || !p.set(k, pub) {
		return
	}
	log.Info("probe result changed", "result", pub == success)
	p.poke()
}

// set records a published result and reports whether it changed.
func (p *prober) set(k probeKey, r probeResult) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := p.results[k]
	p.results[k] = r
	return !ok || old != r
}

// result returns the published result of a probe, or its initial one.
func (p *prober) result(k probeKey) probeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.results[k]; ok {
		return r
	}
	return initialResult(k.kind)
}

// status reports whether a running attempt of c has started (its startup
// probe succeeded, if it has one) and is ready (started, and its readiness
// probe succeeded, if it has one).
func (p *prober) status(uid types.UID, c *corev1.Container, attempt int) (started, ready bool) {
	a := attemptKey{uid: uid, name: c.Name, attempt: attempt}
	started = c.StartupProbe == nil || p.result(probeKey{a, startupProbe}) == success
	ready = started && (c.ReadinessProbe == nil || p.result(probeKey{a, readinessProbe}) == success)
	return started, ready
}

// failed returns the running attempts whose liveness or startup probe
// failed and that were not acted on yet, and marks them acted on.
func (p *prober) failed(v *podView) []probeKey {
	var out []probeKey
	for _, c := range allContainers(v.pod) {
		cv := v.containers[c.Name]
		if cv == nil || cv.latest == nil || cv.latest.Phase != ContainerRunning {
			continue
		}
		a := attemptKey{uid: v.pod.UID, name: c.Name, attempt: cv.latest.Attempt}
		for _, kind := range []probeKind{startupProbe, livenessProbe} {
			if probeOf(c, kind) != nil && !p.killed[a] && p.result(probeKey{a, kind}) == failure {
				p.killed[a] = true
				out = append(out, probeKey{a, kind})
			}
		}
	}
	return out
}

// allContainers returns the pod's init containers, then its app containers.
func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}
