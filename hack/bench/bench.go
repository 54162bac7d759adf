package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// system is one thing under test: peapod, podman or the floor.
type system interface {
	name() string
	// start asks for pods to run and returns once the request is made
	// (peapod, floor: the manifests renamed into the directory) or done
	// (podman: kube play returned). The detector runs meanwhile.
	start(ctx context.Context, pods []pod) error
	// stop asks for pods to go (manifests removed, kube down).
	stop(ctx context.Context, pods []pod) error
	// overhead returns the PIDs whose memory and CPU are the system's cost
	// of running pods: agent and shims, conmon and infra, the floor agent.
	overhead() []int
	// residue counts what of the system's pods outlives their processes
	// (mounts, links, cgroups, netns pins); teardown is complete when it is
	// back to the count taken with no pod.
	residue() map[string]int
	close(ctx context.Context) error
}

// agent is a system with a long-lived agent process among its overhead
// processes (peapod, the floor; podman has none).
type agent interface {
	agentPID() int
}

// pod is one benchmark pod: a unique name and one marker per container.
type pod struct {
	name    string
	markers []string
}

const containersPerPod = 2

// bench runs the phases over the systems, interleaved.
type bench struct {
	log     *slog.Logger
	o       options
	res     *results
	systems []system
	seq     int
	nonce   int
}

func (b *bench) newPods(n int) []pod {
	if b.nonce == 0 {
		b.nonce = 100 + rand.IntN(800)
	}
	pods := make([]pod, n)
	for i := range pods {
		b.seq++
		p := pod{name: fmt.Sprintf("pb-%d-%d", b.nonce, b.seq)}
		for c := range containersPerPod {
			// A valid sleep duration (about 30 years) that no other
			// process on the machine carries.
			p.markers = append(p.markers, fmt.Sprintf("9%03d%05d%d", b.nonce, b.seq, c))
		}
		pods[i] = p
	}
	return pods
}

func (b *bench) all(ctx context.Context) error {
	for _, s := range b.systems {
		b.res.Baseline[s.name()] = s.residue()
	}
	b.log.Info("warm-up: one pod per system")
	for _, s := range b.systems {
		if _, _, err := b.cycle(ctx, s, b.newPods(1)); err != nil {
			return fmt.Errorf("%s warm-up: %w", s.name(), err)
		}
	}
	b.log.Info("single pod start/stop", "runs", b.o.runs)
	for i := range b.o.runs {
		for _, s := range b.rotate(i) {
			up, down, err := b.cycle(ctx, s, b.newPods(1))
			if err != nil {
				return fmt.Errorf("%s run %d: %w", s.name(), i, err)
			}
			b.res.add(s.name(), "start_1", up)
			b.res.add(s.name(), "stop_1", down.procs)
			b.res.add(s.name(), "clean_1", down.clean)
		}
	}
	b.log.Info("bulk", "pods", b.o.bulk, "reps", b.o.bulkReps)
	for i := range b.o.bulkReps {
		for _, s := range b.rotate(i) {
			if err := b.bulk(ctx, s, i == 0); err != nil {
				return fmt.Errorf("%s bulk: %w", s.name(), err)
			}
		}
	}
	for _, s := range b.systems {
		if sc, ok := s.(scraper); ok {
			if err := b.scrape(ctx, s, sc); err != nil {
				return fmt.Errorf("%s scrape: %w", s.name(), err)
			}
		}
	}
	return nil
}

// rotate returns the systems in an order that shifts by one each iteration,
// so no system always runs right after the same other one.
func (b *bench) rotate(i int) []system {
	n := len(b.systems)
	out := make([]system, n)
	for j := range n {
		out[j] = b.systems[(i+j)%n]
	}
	return out
}

type teardown struct{ procs, clean time.Duration }

// cycle starts pods, waits until all run, stops them and waits until none is
// left, returning both latencies.
func (b *bench) cycle(ctx context.Context, s system, pods []pod) (time.Duration, teardown, error) {
	up, err := b.up(ctx, s, pods)
	if err != nil {
		return 0, teardown{}, err
	}
	down, err := b.down(ctx, s, pods)
	return up, down, err
}

var (
	startTimeout = 5 * time.Minute
	stopTimeout  = 5 * time.Minute
)

// up starts pods and returns the time until every container's main process
// runs.
func (b *bench) up(ctx context.Context, s system, pods []pod) (time.Duration, error) {
	t0 := time.Now()
	return b.watch(ctx, s.start, pods, func(ctx context.Context) (time.Duration, error) {
		return waitMarkers(ctx, t0, startTimeout, markersOf(pods), true, b.res.scan)
	})
}

// down stops pods and returns the time until none of their processes is
// left, and until the system's residue is back to its baseline too.
func (b *bench) down(ctx context.Context, s system, pods []pod) (teardown, error) {
	t0 := time.Now()
	var td teardown
	_, err := b.watch(ctx, s.stop, pods, func(ctx context.Context) (time.Duration, error) {
		var err error
		td.procs, err = waitMarkers(ctx, t0, stopTimeout, markersOf(pods), false, b.res.scan)
		if err == nil {
			td.clean, err = waitResidue(ctx, t0, 60*time.Second, s, b.res.Baseline[s.name()])
		}
		td.clean = max(td.clean, td.procs)
		return 0, err
	})
	return td, err
}

// watch runs act (start or stop) while wait watches from outside; an error
// from act ends the wait at once.
func (b *bench) watch(ctx context.Context, act func(context.Context, []pod) error, pods []pod, wait func(context.Context) (time.Duration, error)) (time.Duration, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := act(ctx, pods)
		if err != nil {
			cancel()
		}
		errc <- err
	}()
	d, err := wait(wctx)
	if aerr := <-errc; aerr != nil {
		return 0, aerr
	}
	return d, err
}

// bulk drops b.o.bulk pods at once; the first repetition also measures
// memory and idle CPU with all of them running.
func (b *bench) bulk(ctx context.Context, s system, measure bool) error {
	pods := b.newPods(b.o.bulk)
	up, err := b.up(ctx, s, pods)
	if err != nil {
		return err
	}
	b.res.add(s.name(), "start_bulk", up)
	if measure {
		time.Sleep(2 * time.Second) // let start-up transients settle
		pss, rss, n := memory(s.overhead())
		b.res.addValue(s.name(), "pss_per_pod", float64(pss)/float64(len(pods)))
		b.res.addValue(s.name(), "rss_per_pod", float64(rss)/float64(len(pods)))
		b.res.addValue(s.name(), "overhead_procs", float64(n))
		b.log.Info("idle window", "system", s.name(), "for", b.o.idle)
		cpu, byPID := idleCPU(ctx, s, b.o.idle)
		perMin := func(d time.Duration) float64 {
			return float64(d.Milliseconds()) * float64(time.Minute) / float64(b.o.idle)
		}
		b.res.addValue(s.name(), "idle_cpu_ms_per_min", perMin(cpu))
		if a, ok := s.(agent); ok {
			b.res.addValue(s.name(), "idle_cpu_agent_ms_per_min", perMin(byPID[a.agentPID()]))
		}
	}
	down, err := b.down(ctx, s, pods)
	if err != nil {
		return err
	}
	b.res.add(s.name(), "stop_bulk", down.procs)
	b.res.add(s.name(), "clean_bulk", down.clean)
	return nil
}

// scraper is a system that serves Prometheus metrics.
type scraper interface {
	scrapeMetrics(ctx context.Context) (time.Duration, int, error)
}

// scrape grows the system to each pod count of --scrape and measures
// /metrics there (median of 20 scrapes).
func (b *bench) scrape(ctx context.Context, s system, sc scraper) error {
	var running []pod
	for _, n := range b.o.scrape {
		if n > len(running) {
			more := b.newPods(n - len(running))
			if _, err := b.up(ctx, s, more); err != nil {
				return err
			}
			running = append(running, more...)
		}
		time.Sleep(time.Second)
		var lat []time.Duration
		size := 0
		for range 20 {
			d, sz, err := sc.scrapeMetrics(ctx)
			if err != nil {
				return err
			}
			lat = append(lat, d)
			size = sz
		}
		c := n * containersPerPod
		for _, d := range lat {
			b.res.add(s.name(), fmt.Sprintf("scrape_ms_%d_containers", c), d)
		}
		b.res.addValue(s.name(), fmt.Sprintf("scrape_bytes_%d_containers", c), float64(size))
	}
	_, err := b.down(ctx, s, running)
	return err
}

func markersOf(pods []pod) []string {
	var m []string
	for _, p := range pods {
		m = append(m, p.markers...)
	}
	return m
}
