package image

import (
	"context"
	"sync"
)

// flights runs one call per key at a time: a caller asking for a key
// whose call is running waits for that call's result instead of starting
// another. The call runs on its own context, cancelled only when every
// caller waiting for it has given up, so one pod deleted mid-pull does
// not fail the pull another pod waits for. The zero value is ready.
type flights struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done    chan struct{}
	val     any
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do runs fn for key, or joins the call running for it, and returns its
// result, or ctx's error when ctx is done first. The last caller to give
// up cancels the call and waits for fn to return.
func (f *flights) do(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flight{}
	}
	c, ok := f.calls[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flight{done: make(chan struct{}), cancel: cancel}
		f.calls[key] = c
		// The goroutine belongs to the flight: it ends when fn returns,
		// and the last waiter to give up cancels fctx and waits for it.
		go func() {
			defer close(c.done)
			c.val, c.err = fn(fctx)
			cancel()
			f.forget(key, c)
		}()
	}
	c.waiters++
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		f.mu.Lock()
		c.waiters--
		last := c.waiters == 0
		if last {
			c.cancel()
			// A new caller must start afresh, not join a cancelled call.
			if f.calls[key] == c {
				delete(f.calls, key)
			}
		}
		f.mu.Unlock()
		if last {
			// The call was this caller's alone now: wait for it to stop
			// and clean up, so that nothing of it outlives the return.
			<-c.done
		}
		return nil, ctx.Err()
	}
}

func (f *flights) forget(key string, c *flight) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls[key] == c {
		delete(f.calls, key)
	}
}
