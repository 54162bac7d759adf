package netsetup

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// A process killed between writing its temporary file and linking it
// leaves the temporary file only: it is not a lease, and the next lock
// holder removes it.
func TestDiskStoreHalfMadeLease(t *testing.T) {
	dir := t.TempDir()
	half := filepath.Join(dir, tempPrefix+"123456")
	if err := os.WriteFile(half, []byte("crashed-pod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := newDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := mustAllocator(t, "10.77.0.0/24", s)
	addr, err := a.allocate("pod")
	if err != nil {
		t.Fatal(err)
	}
	if addr.String() != "10.77.0.2" {
		t.Errorf("allocate = %s, want 10.77.0.2", addr)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-made lease %s still there: %v", half, err)
	}
	leases, _ := a.leases()
	if len(leases) != 1 || leases[addr] != "pod" {
		t.Errorf("leases = %v, want only %s: pod", leases, addr)
	}
}

// A lease file is the whole truth: a second process (a second store on the
// same directory) sees it, and Reserve refuses a taken address even
// without the lock.
func TestDiskStoreSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	s1, _ := newDiskStore(dir)
	s2, _ := newDiskStore(dir)
	addr := netip.MustParseAddr("10.77.0.2")
	if err := s1.Reserve(addr, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Reserve(addr, "b"); !errors.Is(err, errLeased) {
		t.Errorf("second Reserve: err = %v, want errLeased", err)
	}
	a := mustAllocator(t, "10.77.0.0/24", s2)
	got, err := a.allocate("a")
	if err != nil || got != addr {
		t.Errorf("allocate(a) through the second store = %s, %v; want %s", got, err, addr)
	}
	b, err := os.ReadFile(filepath.Join(dir, addr.String()))
	if err != nil || string(b) != "a\n" {
		t.Errorf("lease file = %q, %v; want \"a\\n\"", b, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != lockFile && e.Name() != addr.String() {
			t.Errorf("unexpected file %s in lease directory", e.Name())
		}
	}
}

// An empty lease (from a crash on a disk that lost the data) still holds
// its address: a /30 has one address to hand out, and it is taken.
func TestDiskStoreEmptyLeaseHoldsAddress(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "10.77.0.2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := newDiskStore(dir)
	a := mustAllocator(t, "10.77.0.0/30", s)
	if addr, err := a.allocate("pod"); !errors.Is(err, ErrNoFreeIP) {
		t.Errorf("allocate = %s, %v; want ErrNoFreeIP", addr, err)
	}
}
