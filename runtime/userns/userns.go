// Package userns hands out per-pod host ID ranges for user namespaces.
//
// Every pod gets RangeSize consecutive host IDs, used for both UIDs and GIDs:
// container ID n maps to host ID start+n. A reservation is a file in the
// state directory named after the range's first host ID and holding the pod
// UID; link(2) creates it atomically, so a crash at any point neither loses a
// reservation nor hands one range to two pods.
package userns

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// RangeSize is the number of host IDs a pod gets: the full 16-bit ID space
// images expect (nobody is 65534).
const RangeSize = 65536

// tempPrefix marks reservations being written; New removes leftovers.
const tempPrefix = ".tmp-"

// Range is an inclusive span of host IDs to allocate pod ranges from.
type Range struct {
	Start, End uint32
}

// DefaultRange is far above host users and the 100000-based ranges that
// /etc/subuid usually hands out, and holds 16384 pod ranges.
var DefaultRange = Range{Start: 1 << 30, End: 1<<31 - 1}

// ParseRange parses the --userns-range flag, "START-END" (inclusive).
func ParseRange(s string) (Range, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return Range{}, fmt.Errorf("user-ID range %q: want START-END", s)
	}
	start, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	if err != nil {
		return Range{}, fmt.Errorf("user-ID range %q: start: %w", s, err)
	}
	end, err := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	if err != nil {
		return Range{}, fmt.Errorf("user-ID range %q: end: %w", s, err)
	}
	r := Range{Start: uint32(start), End: uint32(end)}
	return r, r.validate()
}

func (r Range) validate() error {
	switch {
	case r.Start == 0:
		// Host ID 0 is host root: a pod must never map onto it.
		return fmt.Errorf("user-ID range %s: must not include host ID 0", r)
	case r.End == 1<<32-1:
		// (uid_t)-1 is the kernel's "no ID" and cannot be mapped.
		return fmt.Errorf("user-ID range %s: must not include 4294967295", r)
	case r.End < r.Start || r.slots() == 0:
		return fmt.Errorf("user-ID range %s: holds fewer than %d IDs", r, RangeSize)
	}
	return nil
}

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End) }

func (r Range) slots() int { return int((uint64(r.End) - uint64(r.Start) + 1) / RangeSize) }

func (r Range) hostID(slot int) uint32 { return r.Start + uint32(slot)*RangeSize }

// Allocator reserves host ID ranges for pods. It is safe for concurrent use;
// only one Allocator may use a state directory at a time.
type Allocator struct {
	dir string
	r   Range

	mu sync.Mutex
	// byPod mirrors the reservation files: pod UID to slot.
	byPod map[types.UID]int
}

// New opens the reservations under stateDir/userns, creating the directory
// and removing half-written reservations left by a crash.
func New(stateDir string, r Range) (*Allocator, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	a := &Allocator{dir: filepath.Join(stateDir, "userns"), r: r, byPod: map[types.UID]int{}}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create user-ID range store: %w", err)
	}
	if err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

// load reads the reservations. A temp file is always garbage: either its
// link(2) never happened, or it did and the slot file already holds the UID.
func (a *Allocator) load() error {
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		return fmt.Errorf("read user-ID range store: %w", err)
	}
	for _, e := range entries {
		name := filepath.Join(a.dir, e.Name())
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale reservation: %w", err)
			}
			continue
		}
		if err := a.loadSlot(e.Name()); err != nil {
			return err
		}
	}
	return nil
}

func (a *Allocator) loadSlot(name string) error {
	id, err := strconv.ParseUint(name, 10, 32)
	if err != nil || uint32(id) < a.r.Start || (uint32(id)-a.r.Start)%RangeSize != 0 {
		// Not ours, or from a different --userns-range: leave it alone, and
		// since link(2) will refuse its name, it can never be double-booked.
		return nil
	}
	slot := int((uint32(id) - a.r.Start) / RangeSize)
	if slot >= a.r.slots() {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(a.dir, name))
	if err != nil {
		return fmt.Errorf("read user-ID range reservation: %w", err)
	}
	uid := types.UID(strings.TrimSpace(string(data)))
	prev, ok := a.byPod[uid]
	if !ok {
		a.byPod[uid] = slot
		return nil
	}
	// Two reservations for one pod can only come from two agents sharing a
	// state directory; keep the lower one so the choice is stable.
	drop := max(slot, prev)
	a.byPod[uid] = min(slot, prev)
	if err := os.Remove(a.slotPath(drop)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove duplicate user-ID range reservation: %w", err)
	}
	return nil
}

// Allocate returns the first host ID of the pod's range, reserving one if
// the pod has none. Calling it again for the same pod returns the same range.
func (a *Allocator) Allocate(uid types.UID) (uint32, error) {
	if uid == "" {
		return 0, errors.New("allocate user-ID range: empty pod UID")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if slot, ok := a.byPod[uid]; ok {
		return a.r.hostID(slot), nil
	}
	tmp, err := a.writeTemp(uid)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	n := a.r.slots()
	first := int(hashUID(uid) % uint64(n))
	for i := range n {
		slot := (first + i) % n
		err := os.Link(tmp, a.slotPath(slot))
		if err == nil {
			a.byPod[uid] = slot
			return a.r.hostID(slot), nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("reserve user-ID range for pod %s: %w", uid, err)
		}
	}
	return 0, fmt.Errorf("no free user-ID range: all %d ranges of %s are in use; widen --userns-range", n, a.r)
}

// writeTemp writes the pod UID to a fresh temp file, ready to be linked to a
// slot name so the reservation appears complete or not at all.
func (a *Allocator) writeTemp(uid types.UID) (string, error) {
	f, err := os.CreateTemp(a.dir, tempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("reserve user-ID range for pod %s: %w", uid, err)
	}
	_, err = f.WriteString(string(uid) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("reserve user-ID range for pod %s: %w", uid, err)
	}
	return f.Name(), nil
}

// Release frees the pod's range. Releasing a pod without one is not an error.
func (a *Allocator) Release(uid types.UID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.release(uid)
}

func (a *Allocator) release(uid types.UID) error {
	slot, ok := a.byPod[uid]
	if !ok {
		return nil
	}
	if err := os.Remove(a.slotPath(slot)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("release user-ID range of pod %s: %w", uid, err)
	}
	delete(a.byPod, uid)
	return nil
}

// GC releases the range of every pod not in live.
func (a *Allocator) GC(live map[types.UID]bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for uid := range a.byPod {
		if !live[uid] {
			errs = append(errs, a.release(uid))
		}
	}
	return errors.Join(errs...)
}

func (a *Allocator) slotPath(slot int) string {
	return filepath.Join(a.dir, strconv.FormatUint(uint64(a.r.hostID(slot)), 10))
}

func hashUID(uid types.UID) uint64 {
	h := fnv.New64a()
	h.Write([]byte(uid))
	return h.Sum64()
}
