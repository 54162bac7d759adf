package netsetup

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// ErrNoFreeIP is wrapped by the error Setup returns when every address of
// the pod CIDR is leased.
var ErrNoFreeIP = errors.New("no free IP")

// errLeased is returned by leaseStore.Reserve when the address already has
// a lease.
var errLeased = errors.New("address already leased")

// leaseStore keeps the IP leases of one pod CIDR. Leases, Reserve and
// Release must only be called while the caller holds the lock, so that a
// scan of Leases followed by a Reserve is atomic with respect to every other
// holder, in this process or another.
type leaseStore interface {
	// Lock blocks until the caller holds the store's lock. The returned
	// function releases it.
	Lock() (unlock func(), err error)
	// Leases returns every lease: address to the pod UID holding it.
	Leases() (map[netip.Addr]types.UID, error)
	// Reserve leases addr to uid, or returns an error wrapping errLeased
	// if addr already has a lease.
	Reserve(addr netip.Addr, uid types.UID) error
	// Release removes the lease of addr; releasing a free address is not
	// an error.
	Release(addr netip.Addr) error
}

// allocator hands out the addresses of one IPv4 prefix, keyed by pod UID.
// The network address, the gateway (the first host address) and the
// broadcast address are never handed out. It is safe for concurrent use.
type allocator struct {
	prefix netip.Prefix
	first  netip.Addr // first address handed out
	last   netip.Addr // last address handed out
	size   uint64     // number of addresses from first to last

	store leaseStore

	// mu serializes the allocator's operations in this process; the store's
	// lock serializes them with other processes.
	mu sync.Mutex
	// cursor is the address handed out most recently: the search for a free
	// address starts after it, so a released address is reused only after
	// the whole range has been cycled through (as host-local does), which
	// keeps stale ARP and conntrack entries of a deleted pod away from a
	// new one.
	cursor netip.Addr
}

// newAllocator returns an allocator of the IPv4 prefix.
func newAllocator(prefix netip.Prefix, store leaseStore) (*allocator, error) {
	if !prefix.Addr().Is4() {
		return nil, fmt.Errorf("pod CIDR %s is not IPv4", prefix)
	}
	prefix = prefix.Masked()
	hostBits := 32 - prefix.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("pod CIDR %s is too small: it needs room for a gateway and a pod", prefix)
	}
	return &allocator{
		prefix: prefix,
		first:  prefix.Addr().Next().Next(),
		last:   lastAddr(prefix).Prev(), // before the broadcast address
		size:   1<<hostBits - 3,
		store:  store,
	}, nil
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// allocate returns the address leased to uid, leasing a free one first if
// uid holds none.
func (a *allocator) allocate(uid types.UID) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := a.store.Lock()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lock leases of %s: %w", a.prefix, err)
	}
	defer unlock()
	leases, err := a.store.Leases()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list leases of %s: %w", a.prefix, err)
	}
	if addr, ok := a.leaseOf(leases, uid); ok {
		return addr, nil
	}
	addr, ok := a.findFree(leases)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w in %s: all %d addresses are leased", ErrNoFreeIP, a.prefix, a.size)
	}
	if err := a.store.Reserve(addr, uid); err != nil {
		return netip.Addr{}, fmt.Errorf("lease %s to pod %s: %w", addr, uid, err)
	}
	a.cursor = addr
	return addr, nil
}

// leaseOf returns the address of the prefix that uid holds.
func (a *allocator) leaseOf(leases map[netip.Addr]types.UID, uid types.UID) (netip.Addr, bool) {
	for addr, holder := range leases {
		if holder == uid && a.inRange(addr) {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

// findFree returns the first address after the cursor, wrapping around,
// that has no lease.
func (a *allocator) findFree(leases map[netip.Addr]types.UID) (netip.Addr, bool) {
	if !a.cursor.IsValid() {
		a.cursor = a.highestLeased(leases)
	}
	start := a.next(a.cursor)
	addr := start
	for {
		if _, taken := leases[addr]; !taken {
			return addr, true
		}
		addr = a.next(addr)
		if addr == start {
			return netip.Addr{}, false
		}
	}
}

// highestLeased is where the cursor starts in a new process: after the
// highest address in use, so that restarting the agent does not hand out
// the addresses released just before it stopped.
func (a *allocator) highestLeased(leases map[netip.Addr]types.UID) netip.Addr {
	highest := a.last
	found := false
	for addr := range leases {
		if a.inRange(addr) && (!found || addr.Compare(highest) > 0) {
			highest, found = addr, true
		}
	}
	return highest
}

// next returns the address after addr in the range, wrapping around.
func (a *allocator) next(addr netip.Addr) netip.Addr {
	if !a.inRange(addr) || addr == a.last {
		return a.first
	}
	return addr.Next()
}

func (a *allocator) inRange(addr netip.Addr) bool {
	return addr.Compare(a.first) >= 0 && addr.Compare(a.last) <= 0
}

// release removes every lease held by uid. Releasing a UID that holds no
// lease is not an error.
func (a *allocator) release(uid types.UID) error {
	_, err := a.releaseIf(func(holder types.UID) bool { return holder == uid })
	return err
}

// releaseIf removes every lease whose holder matches, and returns the
// leases it removed. The error joins those of the leases it could not
// remove.
func (a *allocator) releaseIf(match func(types.UID) bool) (map[netip.Addr]types.UID, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := a.store.Lock()
	if err != nil {
		return nil, fmt.Errorf("lock leases of %s: %w", a.prefix, err)
	}
	defer unlock()
	leases, err := a.store.Leases()
	if err != nil {
		return nil, fmt.Errorf("list leases of %s: %w", a.prefix, err)
	}
	released := make(map[netip.Addr]types.UID)
	var errs []error
	for addr, holder := range leases {
		if !match(holder) {
			continue
		}
		if err := a.store.Release(addr); err != nil {
			errs = append(errs, fmt.Errorf("release %s of pod %s: %w", addr, holder, err))
			continue
		}
		released[addr] = holder
	}
	return released, errors.Join(errs...)
}

// leases returns a copy of every lease in the store.
func (a *allocator) leases() (map[netip.Addr]types.UID, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := a.store.Lock()
	if err != nil {
		return nil, fmt.Errorf("lock leases of %s: %w", a.prefix, err)
	}
	defer unlock()
	return a.store.Leases()
}
