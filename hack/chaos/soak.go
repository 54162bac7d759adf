package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runSoak creates a batch of pods, waits for them to run, deletes them and
// waits for them to go, cycle after cycle. The agent's open files must not
// grow from the first cycle to the last (its memory is reported).
func runSoak(ctx context.Context, o *options, rng *rand.Rand, a *testAgent) (figures, error) {
	cycles, perCycle := 12, 4
	if o.long {
		cycles, perCycle = 300, 8
	}
	var fds0 int
	var rss0 int64
	var slowest time.Duration
	for c := range cycles {
		t0 := time.Now()
		names := map[string]bool{}
		n := 1 + rng.IntN(perCycle)
		for i := range n {
			name := fmt.Sprintf("soak-%d-%d", c, i)
			names[name] = true
			if err := a.writeManifest(name+".yaml", longPod(a.image, name, 1, 0)); err != nil {
				return nil, err
			}
		}
		err := a.waitPods(ctx, 2*time.Minute, fmt.Sprintf("cycle %d: %d pods running", c, n), func(m map[string]corev1.Pod) error {
			var errs []error
			for name := range names {
				errs = append(errs, allRunning(m[name]))
			}
			return errors.Join(errs...)
		})
		if err != nil {
			return nil, err
		}
		if err := a.checkIPs(ctx); err != nil {
			return nil, fmt.Errorf("cycle %d: %w", c, err)
		}
		for name := range names {
			if err := a.removeManifest(name + ".yaml"); err != nil {
				return nil, err
			}
		}
		if err := a.waitNoPods(ctx, 2*time.Minute); err != nil {
			return nil, fmt.Errorf("cycle %d: %w", c, err)
		}
		slowest = max(slowest, time.Since(t0))
		if c == 0 {
			fds0 = openFDs(a.pid())
			rss0, _, _ = memory(a.pid())
		}
		o.vlogf("soak: cycle %d: %d pods in %v", c, n, time.Since(t0))
	}
	fds := openFDs(a.pid())
	rss, _, _ := memory(a.pid())
	figs := figures{fmt.Sprintf("%d cycles, %d pod UIDs", cycles, len(a.uids)),
		fmt.Sprintf("slowest cycle %.1fs", slowest.Seconds()),
		fmt.Sprintf("agent fds %d → %d, RSS %d → %d MiB", fds0, fds, rss0>>20, rss>>20)}
	// A few descriptors come and go (connections, the spare shim's
	// socket): a leak grows with the cycles.
	if fds > fds0+10 {
		return figs, fmt.Errorf("the agent's open files grew from %d after the first cycle to %d after %d cycles", fds0, fds, cycles)
	}
	return figs, nil
}
