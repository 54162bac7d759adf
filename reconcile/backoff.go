package reconcile

import "time"

// Restart back-off, as kubelet's CrashLoopBackOff: 10 s doubling up to 5 min,
// forgotten once a container has run for twice the cap (10 min).
const (
	initialBackoff = 10 * time.Second
	maxBackoff     = 5 * time.Minute
	backoffReset   = 2 * maxBackoff
)

// backoff tracks exponential retry delays per key, with the semantics of
// kubelet's flowcontrol.Backoff as its container restarts use it: the first
// failure of a key costs nothing, next records it, and each later failure
// waits delay(key) from the moment it happened before the next try.
//
// The zero value is not usable; use newBackoff. A backoff is owned by one
// worker goroutine and is not safe for concurrent use.
type backoff struct {
	entries map[string]*backoffEntry
}

type backoffEntry struct {
	delay time.Duration
	// lastTry is when next last ran, i.e. when the retried thing started.
	lastTry time.Time
}

func newBackoff() *backoff {
	return &backoff{entries: make(map[string]*backoffEntry)}
}

// inBackoff reports whether a retry for key must still wait after a failure
// that happened at failedAt.
func (b *backoff) inBackoff(key string, failedAt, now time.Time) bool {
	e, ok := b.entries[key]
	if !ok || expired(e, failedAt) {
		return false
	}
	return now.Sub(failedAt) < e.delay
}

// next records a retry of key starting now, after a failure at failedAt,
// and grows the delay the following failure will wait.
func (b *backoff) next(key string, failedAt, now time.Time) {
	e, ok := b.entries[key]
	switch {
	case !ok || expired(e, failedAt):
		e = &backoffEntry{delay: initialBackoff}
		b.entries[key] = e
	default:
		e.delay = min(2*e.delay, maxBackoff)
	}
	e.lastTry = now
}

// delay returns the current delay for key, zero if it has none.
func (b *backoff) delay(key string) time.Duration {
	if e, ok := b.entries[key]; ok {
		return e.delay
	}
	return 0
}

// retryAt returns when a retry of key may start after a failure at failedAt.
func (b *backoff) retryAt(key string, failedAt time.Time) time.Time {
	return failedAt.Add(b.delay(key))
}

// forget drops key, so its next failure starts from the initial delay.
func (b *backoff) forget(key string) { delete(b.entries, key) }

// expired reports whether the thing retried ran long enough before failing
// again at failedAt for its past failures to be forgiven.
func expired(e *backoffEntry, failedAt time.Time) bool {
	return failedAt.Sub(e.lastTry) > backoffReset
}
