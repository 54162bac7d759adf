package netsetup

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// memStore is an in-memory leaseStore.
type memStore struct {
	lock sync.Mutex // held between Lock and unlock

	mu     sync.Mutex // guards leases
	leases map[netip.Addr]types.UID
}

func newMemStore() *memStore { return &memStore{leases: make(map[netip.Addr]types.UID)} }

func (s *memStore) Lock() (func(), error) {
	s.lock.Lock()
	return s.lock.Unlock, nil
}

func (s *memStore) Leases() (map[netip.Addr]types.UID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.leases), nil
}

func (s *memStore) Reserve(addr netip.Addr, uid types.UID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[addr]; ok {
		return fmt.Errorf("%s: %w", addr, errLeased)
	}
	s.leases[addr] = uid
	return nil
}

func (s *memStore) Release(addr netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.leases, addr)
	return nil
}

// storeFactories are the stores every allocator test runs against.
// Each factory returns a function that opens the same store again, as a
// second process would.
func storeFactories(t *testing.T) map[string]func(t *testing.T) leaseStore {
	return map[string]func(t *testing.T) leaseStore{
		"mem": func(*testing.T) leaseStore { return newMemStore() },
		"disk": func(t *testing.T) leaseStore {
			s, err := newDiskStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

// reopen returns a second handle on s's leases: for the disk store a new
// store on the same directory, with its own flock, as another process
// would have.
func reopen(t *testing.T, s leaseStore) leaseStore {
	ds, ok := s.(*diskStore)
	if !ok {
		return s
	}
	s2, err := newDiskStore(ds.dir)
	if err != nil {
		t.Fatal(err)
	}
	return s2
}

func mustAllocator(t *testing.T, cidr string, s leaseStore) *allocator {
	t.Helper()
	a, err := newAllocator(netip.MustParsePrefix(cidr), s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func uidN(i int) types.UID { return types.UID(fmt.Sprintf("uid-%03d", i)) }

func TestAllocatorConcurrentUnique(t *testing.T) {
	for name, newStore := range storeFactories(t) {
		t.Run(name, func(t *testing.T) {
			// Two allocators on one store: two agents, or an agent and
			// its restarted self, racing for 253 addresses.
			s := newStore(t)
			allocs := []*allocator{mustAllocator(t, "10.77.0.0/24", s), mustAllocator(t, "10.77.0.0/24", reopen(t, s))}
			const n = 200
			got := make([]netip.Addr, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { got[i], errs[i] = allocs[i%2].allocate(uidN(i)) })
			}
			wg.Wait()
			seen := make(map[netip.Addr]int)
			for i, addr := range got {
				if errs[i] != nil {
					t.Fatalf("allocate %s: %v", uidN(i), errs[i])
				}
				if j, dup := seen[addr]; dup {
					t.Fatalf("%s leased to both %s and %s", addr, uidN(j), uidN(i))
				}
				seen[addr] = i
			}
			leases, err := allocs[0].leases()
			if err != nil {
				t.Fatal(err)
			}
			if len(leases) != n {
				t.Errorf("store holds %d leases, want %d", len(leases), n)
			}
		})
	}
}

func TestAllocatorStableAndRelease(t *testing.T) {
	for name, newStore := range storeFactories(t) {
		t.Run(name, func(t *testing.T) {
			a := mustAllocator(t, "10.77.0.0/24", newStore(t))
			first, err := a.allocate("a")
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddr("10.77.0.2"); first != want {
				t.Errorf("first address = %s, want %s (after network and gateway)", first, want)
			}
			again, err := a.allocate("a")
			if err != nil || again != first {
				t.Errorf("second allocate = %s, %v; want %s", again, err, first)
			}
			if err := a.release("a"); err != nil {
				t.Fatal(err)
			}
			if err := a.release("a"); err != nil {
				t.Errorf("second release: %v", err)
			}
			leases, _ := a.leases()
			if len(leases) != 0 {
				t.Errorf("leases after release: %v", leases)
			}
			// Round robin: the released address is not handed out again
			// before the range has been cycled through.
			next, err := a.allocate("b")
			if err != nil || next == first {
				t.Errorf("allocate after release = %s, %v; want an address other than %s", next, err, first)
			}
		})
	}
}

func TestAllocatorExhaustion(t *testing.T) {
	for name, newStore := range storeFactories(t) {
		t.Run(name, func(t *testing.T) {
			// A /29 has 8 addresses: network, gateway and broadcast are
			// never handed out, which leaves .2 to .6.
			a := mustAllocator(t, "10.77.0.0/29", newStore(t))
			var got []string
			for i := range 5 {
				addr, err := a.allocate(uidN(i))
				if err != nil {
					t.Fatalf("allocate %d: %v", i, err)
				}
				got = append(got, addr.String())
			}
			want := []string{"10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.5", "10.77.0.6"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("addresses = %v, want %v", got, want)
			}
			_, err := a.allocate("one-too-many")
			if !errors.Is(err, ErrNoFreeIP) {
				t.Fatalf("allocate on a full range: err = %v, want ErrNoFreeIP", err)
			}
			if want := "no free IP in 10.77.0.0/29: all 5 addresses are leased"; err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
			if err := a.release(uidN(2)); err != nil {
				t.Fatal(err)
			}
			addr, err := a.allocate("one-too-many")
			if err != nil || addr.String() != "10.77.0.4" {
				t.Errorf("allocate after a release = %s, %v; want 10.77.0.4", addr, err)
			}
		})
	}
}

func TestAllocatorReleaseIf(t *testing.T) {
	a := mustAllocator(t, "10.77.0.0/24", newMemStore())
	for i := range 4 {
		if _, err := a.allocate(uidN(i)); err != nil {
			t.Fatal(err)
		}
	}
	live := map[types.UID]bool{uidN(1): true, uidN(3): true}
	released, err := a.releaseIf(func(uid types.UID) bool { return !live[uid] })
	if err != nil {
		t.Fatal(err)
	}
	if len(released) != 2 {
		t.Errorf("released %v, want the leases of %s and %s", released, uidN(0), uidN(2))
	}
	leases, _ := a.leases()
	var holders []types.UID
	for _, uid := range leases {
		holders = append(holders, uid)
	}
	if len(holders) != 2 || !live[holders[0]] || !live[holders[1]] {
		t.Errorf("holders after releaseIf = %v, want %s and %s", holders, uidN(1), uidN(3))
	}
}

// A new process starts after the highest address in use, not at the start
// of the range, so it does not hand out an address released just before
// the restart.
func TestAllocatorCursorAfterRestart(t *testing.T) {
	s := newMemStore()
	if err := s.Reserve(netip.MustParseAddr("10.77.0.9"), "old"); err != nil {
		t.Fatal(err)
	}
	a := mustAllocator(t, "10.77.0.0/24", s)
	addr, err := a.allocate("new")
	if err != nil || addr.String() != "10.77.0.10" {
		t.Errorf("allocate = %s, %v; want 10.77.0.10", addr, err)
	}
}

func TestNewAllocatorTooSmall(t *testing.T) {
	for _, cidr := range []string{"10.77.0.0/31", "10.77.0.0/32", "10.77.0.0/30"} {
		_, err := newAllocator(netip.MustParsePrefix(cidr), newMemStore())
		if cidr == "10.77.0.0/30" {
			if err != nil {
				t.Errorf("%s: %v, want a usable range of one address", cidr, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want too small", cidr)
		}
	}
}
