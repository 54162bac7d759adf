package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

type fakeImageStore struct {
	mu    sync.Mutex
	ids   []string
	kept  []string
	calls int
}

func (s *fakeImageStore) GC(_ context.Context, inUse func(string) bool, high, low int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if high != 85 || low != 80 {
		return 0, errors.New("thresholds not passed through")
	}
	s.kept = nil
	for _, id := range s.ids {
		if inUse(id) {
			s.kept = append(s.kept, id)
		}
	}
	return 1, nil
}

type fakeUsers map[string]bool

func (u fakeUsers) ImagesInUse() (map[string]bool, error) { return u, nil }

// TestImageGC: every round asks the store to collect with the thresholds,
// sparing exactly the images the runtime's containers use, and the loop
// stops with its context.
func TestImageGC(t *testing.T) {
	store := &fakeImageStore{ids: []string{"sha256:a", "sha256:b", "sha256:c"}}
	g := &imageGC{images: store, users: fakeUsers{"sha256:b": true}, high: 85, low: 80}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.collectPeriodically(ctx, slog.New(slog.DiscardHandler), time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		store.mu.Lock()
		calls, kept := store.calls, store.kept
		store.mu.Unlock()
		if calls >= 2 {
			if len(kept) != 1 || kept[0] != "sha256:b" {
				t.Errorf("in use %v, want only sha256:b", kept)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no two rounds of image GC")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("collectPeriodically: %v", err)
	}
}
