package runtime

import (
	"sync"
	"testing"
	"time"
)

func TestPodLocksSerialiseOnePodOnly(t *testing.T) {
	var p podLocks
	unlockA := p.lock("a")
	// Another pod is not held up.
	done := make(chan struct{})
	go func() { p.lock("b")(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("lock of pod b waited for pod a")
	}
	// The same pod is.
	var mu sync.Mutex
	var order []string
	got := make(chan struct{})
	go func() {
		unlock := p.lock("a")
		mu.Lock()
		order = append(order, "second")
		mu.Unlock()
		unlock()
		close(got)
	}()
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	order = append(order, "first")
	mu.Unlock()
	unlockA()
	<-got
	if len(order) != 2 || order[0] != "first" {
		t.Errorf("order = %v, want the second locker after the first unlocked", order)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.locks); n != 0 {
		t.Errorf("%d lock entries left, want 0", n)
	}
}
