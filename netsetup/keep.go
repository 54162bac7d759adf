package netsetup

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

const (
	// DefaultRepairSettle is how long a repair round waits after the first
	// event of a burst: a firewall reload or an `ip link del` sends many
	// events in a few milliseconds, and one round repairs them all.
	DefaultRepairSettle = 50 * time.Millisecond
	// DefaultRepairResync is how often everything is checked without an
	// event: what sends none (a sysctl written, a pod's own eth0 changed
	// from inside), or events lost when the kernel's socket buffer
	// overflowed.
	DefaultRepairResync = 30 * time.Second
)

// repairLoop runs repair rounds: a deep one at once and every resync, and
// one settle after the first event of a burst. Events that arrive during a round
// start another round after it, which finds nothing to do when they were
// the round's own.
type repairLoop struct {
	clock  clock.WithTicker
	settle time.Duration
	resync time.Duration
	round  func(ctx context.Context, deep bool)
}

// run calls round until ctx is done. events carries the hints of the
// watchers; a 1-buffered channel suffices, as a pending hint says
// everything a new one would.
func (l *repairLoop) run(ctx context.Context, events <-chan struct{}) {
	ticker := l.clock.NewTicker(l.resync)
	defer ticker.Stop()
	var settle clock.Timer
	var settleC <-chan time.Time
	defer func() {
		if settle != nil {
			settle.Stop()
		}
	}()
	l.round(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			if settleC == nil {
				settle = l.clock.NewTimer(l.settle)
				settleC = settle.C()
			}
		case <-settleC:
			settle, settleC = nil, nil
			l.round(ctx, false)
		case <-ticker.C():
			l.round(ctx, true)
		}
	}
}

// hint sends on a 1-buffered channel without blocking.
func hint(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
