package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runChurn creates, edits and deletes pods in a loop while the agent is
// killed with SIGKILL at random moments and restarted after a random
// time down; manifests keep changing while it is down. Every other kill
// waits for a pod that exits with a chosen code while the agent is down.
// Exit pods are checked for their exit code and removed, oldest first,
// as they pile up. At the end the agent must run exactly the pods of the
// manifests, at their latest generation, with distinct addresses in its
// CIDR, and report every exit code.
func runChurn(ctx context.Context, o *options, rng *rand.Rand, a *testAgent) (figures, error) {
	ops, pool, ports := 200, 10, 3
	if o.long {
		ops, pool, ports = 2500, 30, 8
	}
	desired := map[string]int{} // long pod name → generation
	exits := map[string]int{}   // exit pod name → exit code
	var exitOrder []string      // exit pods, oldest first
	var creates, edits, deletes, downExits, retired int
	portOf := func(i int) int {
		if i < ports {
			return o.portBase + i
		}
		return 0
	}
	addExit := func(name string, code int) {
		exits[name] = code
		exitOrder = append(exitOrder, name)
	}
	// retire checks the exit code of the oldest exit pods and removes
	// them, keeping at most maxExits: a pod that ran to completion keeps
	// its sandbox and address until its manifest goes, and a /24 would
	// run out of addresses in a long run.
	const maxExits = 10
	retire := func() error {
		for len(exitOrder) > maxExits {
			name := exitOrder[0]
			err := a.waitPods(ctx, 2*time.Minute, name+" exited with code "+fmt.Sprint(exits[name]), func(m map[string]corev1.Pod) error {
				return exitedWith(m[name], exits[name])
			})
			if err != nil {
				return err
			}
			if err := a.removeManifest(name + ".yaml"); err != nil {
				return err
			}
			delete(exits, name)
			exitOrder = exitOrder[1:]
			retired++
		}
		return nil
	}
	write := func(i, gen int) error {
		name := fmt.Sprintf("churn-%d", i)
		desired[name] = gen
		return a.writeManifest(name+".yaml", longPod(a.image, name, gen, portOf(i)))
	}

	// Kills and restarts are scheduled in operations, not in time, so
	// that a seed always makes the same sequence of changes and kills.
	nextKill := 8 + rng.IntN(20)
	restartOp, kills := 0, 0
	for op := 0; op < ops; op++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := a.alive(); err != nil {
			return nil, fmt.Errorf("op %d: %w", op, err)
		}
		switch {
		case !a.running() && op >= restartOp:
			o.vlogf("churn: op %d: restart agent", op)
			if err := a.start(ctx); err != nil {
				return nil, fmt.Errorf("restart after kill -9 #%d: %w", kills, err)
			}
			nextKill = op + 8 + rng.IntN(20)
		case a.running() && op >= nextKill:
			kills++
			if kills%2 == 0 {
				// A pod that exits while the agent is down: wait until
				// it runs, kill the agent, and stay down past its exit.
				name := fmt.Sprintf("churn-exit-%d", kills)
				code := 1 + rng.IntN(120)
				addExit(name, code)
				if err := a.writeManifest(name+".yaml", exitPod(a.image, name, code, "2")); err != nil {
					return nil, err
				}
				err := a.waitPods(ctx, 90*time.Second, name+" running", func(m map[string]corev1.Pod) error {
					return allRunning(m[name])
				})
				if err != nil {
					return nil, err
				}
				a.kill9()
				downExits++
				if err := sleep(ctx, 3*time.Second); err != nil {
					return nil, err
				}
				restartOp = op
			} else {
				a.kill9()
				// Down for a few changes, or none.
				restartOp = op + rng.IntN(6)
			}
			o.vlogf("churn: op %d: kill -9 #%d, down until op %d", op, kills, restartOp)
		default:
			i := rng.IntN(pool)
			name := fmt.Sprintf("churn-%d", i)
			gen, ok := desired[name]
			var err error
			switch r := rng.IntN(10); {
			case !ok:
				creates++
				err = write(i, 1)
			case r < 6:
				edits++
				err = write(i, gen+1)
			default:
				deletes++
				delete(desired, name)
				err = a.removeManifest(name + ".yaml")
			}
			if err != nil {
				return nil, err
			}
			if rng.IntN(8) == 0 {
				// A short-lived pod at a random moment, agent up or down.
				name := fmt.Sprintf("churn-quick-%d", creates+edits+deletes)
				code := rng.IntN(256)
				addExit(name, code)
				if err := a.writeManifest(name+".yaml", exitPod(a.image, name, code, "0.5")); err != nil {
					return nil, err
				}
			}
			if err := sleep(ctx, randDur(rng, 50*time.Millisecond, 400*time.Millisecond)); err != nil {
				return nil, err
			}
			a.noteUIDs()
			if a.running() {
				if err := retire(); err != nil {
					return nil, err
				}
			}
		}
	}
	if !a.running() {
		if err := a.start(ctx); err != nil {
			return nil, err
		}
	}
	figs := figures{fmt.Sprintf("%d kill -9s (%d with an exit while down)", kills, downExits),
		fmt.Sprintf("%d creates, %d edits, %d deletes, %d exit pods", creates, edits, deletes, retired+len(exits))}
	err := a.waitPods(ctx, 3*time.Minute, "the pods to match the manifests", func(m map[string]corev1.Pod) error {
		var errs []error
		for name := range m {
			if _, ok := desired[name]; !ok {
				if _, ok := exits[name]; !ok {
					errs = append(errs, fmt.Errorf("pod %s runs without a manifest", name))
				}
			}
		}
		for name, gen := range desired {
			p, ok := m[name]
			if !ok {
				errs = append(errs, fmt.Errorf("pod %s (generation %d) missing", name, gen))
				continue
			}
			errs = append(errs, runningGen(p, gen))
		}
		for name, code := range exits {
			p, ok := m[name]
			if !ok {
				errs = append(errs, fmt.Errorf("exit pod %s missing", name))
				continue
			}
			errs = append(errs, exitedWith(p, code))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return figs, err
	}
	figs = append(figs, fmt.Sprintf("%d pod UIDs", len(a.uids)), fmt.Sprintf("%d exit codes reported", retired+len(exits)))
	return figs, a.checkIPs(ctx)
}

// randDur is a duration drawn uniformly from [lo, hi).
func randDur(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
