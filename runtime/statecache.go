package runtime

import (
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
)

// stateMaxAge bounds how long a listed pod state is reused: even with its
// shim's event stream up and nothing seen to change, ListPods asks the shim
// again after this long.
const stateMaxAge = time.Minute

// stateCache keeps the state ListPods last built for each pod, so that a
// resync (every 10 s) does not query every shim and re-read every record
// when nothing happened. A pod's entry is used only while its shim's event
// stream is connected and nothing has changed the pod since the entry was
// built: every exit the stream reports, the stream connecting or ending,
// and every change the runtime makes (create, start, stop, remove) bumps
// the pod's generation, and an entry built under an older generation is
// not used. A query reads the generation before it asks the shim, so a
// change racing with it leaves an entry that is never used. This is
// kubelet's evented PLEG in small: events carry the changes, the periodic
// list (here every stateMaxAge) is the safety net. The zero value is ready
// to use.
type stateCache struct {
	mu sync.Mutex
	// gen holds each pod's generation, drawn from last: generations are
	// never reused, even for a pod whose entry prune dropped, so an entry
	// can only match the generation it was built under.
	last      uint64
	gen       map[types.UID]uint64
	connected map[types.UID]bool
	entries   map[types.UID]cachedState
}

type cachedState struct {
	gen uint64
	at  time.Time
	st  *reconcile.PodState
}

func (c *stateCache) init() {
	if c.gen == nil {
		c.gen = map[types.UID]uint64{}
		c.connected = map[types.UID]bool{}
		c.entries = map[types.UID]cachedState{}
	}
}

// bump records that the pod may have changed.
func (c *stateCache) bump(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.last++
	c.gen[uid] = c.last
}

// setConnected records whether the pod's event stream is up (the shim has
// registered it), which is a change too.
func (c *stateCache) setConnected(uid types.UID, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.last++
	c.gen[uid] = c.last
	if up {
		c.connected[uid] = true
	} else {
		delete(c.connected, uid)
	}
}

// generation returns the pod's generation, to pass to put.
func (c *stateCache) generation(uid types.UID) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	return c.gen[uid]
}

// get returns a copy of the pod's cached state if it may be used at now.
func (c *stateCache) get(uid types.UID, now time.Time) (*reconcile.PodState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	e, ok := c.entries[uid]
	if !ok || !c.connected[uid] || e.gen != c.gen[uid] || now.Sub(e.at) >= stateMaxAge {
		return nil, false
	}
	return cloneState(e.st), true
}

// put caches st, built when the pod's generation was gen.
func (c *stateCache) put(uid types.UID, gen uint64, at time.Time, st *reconcile.PodState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.entries[uid] = cachedState{gen: gen, at: at, st: cloneState(st)}
}

// prune forgets the pods not in keep.
func (c *stateCache) prune(keep map[types.UID]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid := range c.entries {
		if !keep[uid] {
			delete(c.entries, uid)
		}
	}
	for uid := range c.gen {
		if !keep[uid] && !c.connected[uid] {
			delete(c.gen, uid)
		}
	}
}

// cloneState copies what a caller might change; the pod object is shared
// (see podCache).
func cloneState(st *reconcile.PodState) *reconcile.PodState {
	cp := *st
	cp.PodIPs = slices.Clone(st.PodIPs)
	cp.Containers = slices.Clone(st.Containers)
	return &cp
}
