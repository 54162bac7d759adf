package runtime

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod/peapod/reconcile"
)

func TestStateCache(t *testing.T) {
	var c stateCache
	const uid = "pod-1"
	now := time.Now()
	st := &reconcile.PodState{
		Pod:        &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}},
		PodIPs:     []string{"10.0.0.2"},
		Containers: []reconcile.ContainerState{{Name: "app", Phase: reconcile.ContainerRunning}},
	}
	put := func() { c.put(uid, c.generation(uid), now, st) }

	put()
	if _, ok := c.get(uid, now); ok {
		t.Error("entry used while the event stream is not connected")
	}
	c.setConnected(uid, true)
	if _, ok := c.get(uid, now); ok {
		t.Error("entry built before the stream connected was used")
	}
	put()
	got, ok := c.get(uid, now)
	if !ok {
		t.Fatal("fresh entry with the stream up not used")
	}
	got.Containers[0].Phase = reconcile.ContainerExited
	got.PodIPs[0] = "x"
	if again, _ := c.get(uid, now); again.Containers[0].Phase != reconcile.ContainerRunning || again.PodIPs[0] != "10.0.0.2" {
		t.Error("a caller's change reached the cache")
	}
	if _, ok := c.get(uid, now.Add(stateMaxAge)); ok {
		t.Error("entry used after stateMaxAge")
	}
	c.bump(uid)
	if _, ok := c.get(uid, now); ok {
		t.Error("entry used after a change")
	}
	// A change during the query: the entry is built under the generation
	// read before it, and never used.
	gen := c.generation(uid)
	c.bump(uid)
	c.put(uid, gen, now, st)
	if _, ok := c.get(uid, now); ok {
		t.Error("entry from a query that raced with a change was used")
	}
	put()
	c.setConnected(uid, false)
	if _, ok := c.get(uid, now); ok {
		t.Error("entry used after the stream went away")
	}
	c.prune(nil)
	if len(c.entries) != 0 || len(c.gen) != 0 {
		t.Errorf("prune left %d entries, %d generations", len(c.entries), len(c.gen))
	}
}

// A pod that prune dropped and that comes back never matches an entry
// built before the drop.
func TestStateCacheGenerationsNeverRepeat(t *testing.T) {
	var c stateCache
	const uid = "pod-1"
	now := time.Now()
	st := &reconcile.PodState{Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}}}
	c.bump(uid)
	old := c.generation(uid)
	c.prune(nil)
	c.put(uid, old, now, st) // a query that started before the prune
	c.setConnected(uid, true)
	if _, ok := c.get(uid, now); ok {
		t.Error("entry built before the stream connected was used after a prune")
	}
}
