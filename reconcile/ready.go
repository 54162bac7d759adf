package reconcile

// readiness tracks the controller's first pass: it is ready once the first
// snapshot and the first list have been taken and the worker of every pod
// found running then has synced once, so those pods are adopted (or torn
// down, if their manifest went). New pods do not hold it up: a pod that
// waits for an image pull must not keep a service manager waiting.
// Its fields are guarded by the Controller's mu.
type readiness struct {
	// done is closed once ready.
	done chan struct{}
	// pending holds the keys still to sync; nil until the first list.
	pending map[string]bool
	closed  bool
}

func newReadiness() readiness {
	return readiness{done: make(chan struct{})}
}

// Ready returns a channel that is closed once the controller has adopted
// the pods that were running when it started (see readiness).
func (c *Controller) Ready() <-chan struct{} {
	return c.ready.done
}

// expectAdoption starts the wait for the workers of keys, the keys the
// first list observed. Later calls do nothing.
func (c *Controller) expectAdoption(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &c.ready
	if r.pending != nil || r.closed {
		return
	}
	r.pending = make(map[string]bool, len(keys))
	for _, k := range keys {
		r.pending[k] = true
	}
	c.checkReady()
}

// synced records that key's worker finished a sync.
func (c *Controller) synced(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready.pending != nil {
		delete(c.ready.pending, key)
		c.checkReady()
	}
}

// checkReady closes done once nothing is pending. c.mu must be held.
func (c *Controller) checkReady() {
	r := &c.ready
	if !r.closed && r.pending != nil && len(r.pending) == 0 {
		r.closed = true
		close(r.done)
	}
}
