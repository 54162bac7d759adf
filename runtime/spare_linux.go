package runtime

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/peapod/peapod/runtime/shim"
)

// Starting a shim execs the peapod binary twice, 20-40 ms on the critical
// path of every pod start; binding a shim started ahead takes about one.
// The spare costs one idle shim process for the whole agent.
const (
	// spareBindTimeout bounds a bind: a spare that takes longer is killed
	// and a shim launched instead.
	spareBindTimeout = time.Second
	// spareRetryMin and spareRetryMax bound the pause after a spare that
	// failed to start, doubling in between.
	spareRetryMin = time.Second
	spareRetryMax = time.Minute
	// spareRefillDelay is the pause between handing a spare out and
	// starting the next: starting one costs ~20 ms of CPU, which would
	// otherwise compete with the start of the pod that took the spare.
	spareRefillDelay = 150 * time.Millisecond
)

// sparePool keeps one spare shim ready for the next CreateSandbox. Its
// methods are safe for concurrent use. run is its one goroutine: the
// Runtime starts it in New and stops it through ctx at Close.
type sparePool struct {
	exe     string
	podsDir string
	log     *slog.Logger
	// taken asks run for the next spare.
	taken chan struct{}

	mu sync.Mutex
	// ready is the spare that take hands out next; nil while none is.
	ready *shim.Spare
}

func newSparePool(exe, podsDir string, log *slog.Logger) *sparePool {
	return &sparePool{exe: exe, podsDir: podsDir, log: log, taken: make(chan struct{}, 1)}
}

// take returns the ready spare, or nil if none is (or p is nil), and has
// run start the next one. The caller owns the spare: it binds or closes
// it.
func (p *sparePool) take() *shim.Spare {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	sp := p.ready
	p.ready = nil
	p.mu.Unlock()
	if sp != nil {
		select {
		case p.taken <- struct{}{}:
		default:
		}
	}
	return sp
}

// run keeps one spare ready until ctx is done, then drops it. A start is
// not cut short by ctx, so that its spare is dropped like any other.
func (p *sparePool) run(ctx context.Context) {
	retry := spareRetryMin
	for ctx.Err() == nil {
		sp, err := shim.StartSpare(context.WithoutCancel(ctx), p.exe, p.podsDir)
		if err != nil {
			p.log.Warn("start spare shim", "err", err, "retry", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, spareRetryMax)
			continue
		}
		retry = spareRetryMin
		p.log.Debug("spare shim ready", "pid", sp.PID())
		p.mu.Lock()
		p.ready = sp
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			// Unless a CreateSandbox took it meanwhile.
			if sp := p.take(); sp != nil {
				if err := sp.Close(); err != nil {
					p.log.Warn("drop spare shim", "err", err)
				}
			}
		case <-p.taken:
			select {
			case <-ctx.Done():
				return
			case <-time.After(spareRefillDelay):
			}
		}
	}
}

// startShim starts the shim of the pod directory dir: the spare, if one
// is ready and binds, else a new one. The caller has made sure that no
// other shim serves dir.
func (r *Runtime) startShim(ctx context.Context, dir string) error {
	if sp := r.spares.take(); sp != nil {
		bctx, cancel := context.WithTimeout(ctx, spareBindTimeout)
		err := sp.Bind(bctx, dir)
		cancel()
		if err == nil {
			return nil
		}
		// A spare that failed half-way may listen on dir's socket: it must
		// be gone before another shim starts there.
		if cerr := sp.Close(); cerr != nil {
			return errors.Join(err, cerr)
		}
		r.log.Warn("spare shim failed; launching a shim", "dir", dir, "err", err)
	}
	return shim.Launch(ctx, r.opts.Exe, dir)
}
