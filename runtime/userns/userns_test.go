package userns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    Range
		wantErr bool
	}{
		{in: "1073741824-2147483647", want: DefaultRange},
		{in: "100000-165535", want: Range{100000, 165535}},
		{in: "100000-165534", wantErr: true},
		{in: "0-65535", wantErr: true},
		{in: "4294901760-4294967295", wantErr: true},
		{in: "200000-100000", wantErr: true},
		{in: "100000", wantErr: true},
		{in: "a-b", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseRange(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("ParseRange(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if n := DefaultRange.slots(); n != 16384 {
		t.Errorf("DefaultRange holds %d ranges, want 16384", n)
	}
}

func TestAllocateConcurrentUnique(t *testing.T) {
	a, err := New(t.TempDir(), DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	got := make([]uint32, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = a.Allocate(types.UID(fmt.Sprintf("pod-%d", i))) })
	}
	wg.Wait()
	seen := map[uint32]int{}
	for i, id := range got {
		if errs[i] != nil {
			t.Fatalf("Allocate(pod-%d): %v", i, errs[i])
		}
		if (id-DefaultRange.Start)%RangeSize != 0 || id < DefaultRange.Start {
			t.Errorf("pod-%d: range start %d is not aligned in %v", i, id, DefaultRange)
		}
		if j, dup := seen[id]; dup {
			t.Errorf("pod-%d and pod-%d share range %d", i, j, id)
		}
		seen[id] = i
	}
}

func TestAllocateIdempotentAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	a, err := New(dir, DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Allocate("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.Allocate("pod-a")
	if err != nil || again != first {
		t.Fatalf("second Allocate = %d, %v; want %d", again, err, first)
	}
	b, err := New(dir, DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Allocate("pod-a"); err != nil || got != first {
		t.Fatalf("Allocate after restart = %d, %v; want %d", got, err, first)
	}
}

func TestReleaseAndGC(t *testing.T) {
	dir := t.TempDir()
	a, err := New(dir, Range{Start: 100000, End: 100000 + 2*RangeSize - 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range []types.UID{"a", "b"} {
		if _, err := a.Allocate(uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Release("a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("a"); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := a.Allocate("c"); err != nil {
		t.Fatalf("Allocate after Release: %v", err)
	}
	if err := a.GC(map[types.UID]bool{"c": true}); err != nil {
		t.Fatal(err)
	}
	if got := reservations(t, dir); len(got) != 1 {
		t.Fatalf("after GC: reservations %v, want only c's", got)
	}
	if _, err := a.Allocate("d"); err != nil {
		t.Fatalf("Allocate after GC: %v", err)
	}
}

func TestExhaustion(t *testing.T) {
	r := Range{Start: 100000, End: 100000 + 3*RangeSize - 1}
	a, err := New(t.TempDir(), r)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := a.Allocate(types.UID(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err = a.Allocate("one-too-many")
	want := "no free user-ID range: all 3 ranges of 100000-296607 are in use; widen --userns-range"
	if err == nil || err.Error() != want {
		t.Fatalf("Allocate on a full range: %v, want %q", err, want)
	}
}

// TestCrashLeftovers replays what a kill -9 can leave: a temp file never
// linked, and a temp file already linked to its slot.
func TestCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "userns")
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(store, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tempPrefix+"unlinked", "pod-lost\n")
	write(tempPrefix+"linked", "pod-kept\n")
	if err := os.Link(filepath.Join(store, tempPrefix+"linked"), filepath.Join(store, "100000")); err != nil {
		t.Fatal(err)
	}
	a, err := New(dir, Range{Start: 100000, End: 100000 + 2*RangeSize - 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := reservations(t, dir); strings.Join(got, ",") != "100000" {
		t.Fatalf("reservations after restart = %v, want [100000] and no temp files", got)
	}
	if got, err := a.Allocate("pod-kept"); err != nil || got != 100000 {
		t.Fatalf("Allocate(pod-kept) = %d, %v; want its recorded 100000", got, err)
	}
	if got, err := a.Allocate("pod-lost"); err != nil || got != 100000+RangeSize {
		t.Fatalf("Allocate(pod-lost) = %d, %v; want the free range %d", got, err, 100000+RangeSize)
	}
	_, err = a.Allocate("third")
	if err == nil || !strings.Contains(err.Error(), "no free user-ID range") {
		t.Fatalf("Allocate on a full range: %v", err)
	}
	if errors.Is(err, os.ErrExist) {
		t.Fatalf("exhaustion leaked EEXIST: %v", err)
	}
}

func reservations(t *testing.T, stateDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(stateDir, "userns"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
