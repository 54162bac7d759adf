package netsetup

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"
)

// eventBuffer is the socket receive buffer of the link and address
// subscriptions: a burst of pod starts sends thousands of link events, and
// the kernel drops a subscriber whose buffer is full (ENOBUFS; the watch
// then subscribes again and runs a round).
const eventBuffer = 4 << 20

// watchRetry is the pause before subscribing again to events after a
// subscription failed or ended (the kernel drops a subscriber whose buffer
// overflows).
const watchRetry = time.Second

// KeepOptions configure Keep.
type KeepOptions struct {
	// Pods lists the running pods. Keep calls it with Lock held.
	Pods func(ctx context.Context) ([]PodNetNS, error)
	// Lock is held during each round. Setup and Teardown must hold it
	// too (the read side of the RWMutex whose write side this is), or a
	// round would take a pod half set up, or half torn down, for broken.
	Lock sync.Locker
	// Report, if set, receives each round's result, with Lock held.
	Report func(RepairResult)
	// Settle is the wait after the first event of a burst;
	// DefaultRepairSettle if zero.
	Settle time.Duration
	// Resync is the period of the deep check; DefaultRepairResync if zero.
	Resync time.Duration
}

// Keep keeps the host network of the pods as Ensure and Setup made it,
// until ctx is done: it runs Repair on every netlink event that may have
// broken it (the bridge or a pod veth deleted, the bridge set down, the
// gateway address deleted, a change by another process in the nftables
// table), a settle time after the first event of a burst, and a deep
// Repair every resync period. It returns once every goroutine it started
// has stopped.
func (m *Manager) Keep(ctx context.Context, opts KeepOptions) {
	hints := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The first round waits for the subscriptions: a change made after it
	// is then always seen.
	var subscribed sync.WaitGroup
	subscribed.Add(3)
	wg.Go(func() {
		watch(ctx, m, "links", hints, subscribed.Done, m.subscribeLinks,
			func(u netlink.LinkUpdate) bool { return linkNeedsRepair(u, m.bridge) })
	})
	wg.Go(func() {
		watch(ctx, m, "addresses", hints, subscribed.Done, m.subscribeAddrs,
			func(u netlink.AddrUpdate) bool { return addrNeedsRepair(u, m.gateway.Addr()) })
	})
	pid := uint32(os.Getpid())
	wg.Go(func() {
		watch(ctx, m, "nftables", hints, subscribed.Done, subscribeNFT,
			func(e *nftables.MonitorEvents) bool { return nftNeedsRepair(e, m.bridge, pid) })
	})
	subscribed.Wait()
	l := &repairLoop{
		clock:  clock.RealClock{},
		settle: cmp.Or(opts.Settle, DefaultRepairSettle),
		resync: cmp.Or(opts.Resync, DefaultRepairResync),
		round: func(ctx context.Context, deep bool) {
			opts.Lock.Lock()
			defer opts.Lock.Unlock()
			pods, err := opts.Pods(ctx)
			if err != nil {
				if ctx.Err() == nil {
					m.log.Error("network repair: list pods", "err", err)
				}
				return
			}
			res, err := m.Repair(ctx, pods, deep)
			if err != nil && ctx.Err() == nil {
				m.log.Error("network repair", "err", err)
			}
			if opts.Report != nil {
				opts.Report(res)
			}
		},
	}
	l.run(ctx, hints)
}

// watch keeps a subscription to kernel events, and hints for a round on
// each event that needs one. It calls tried once the first subscription
// is made or failed. A subscription that ends (the kernel dropped it on a
// buffer overflow) or fails is made again after watchRetry, with a round:
// events may have been lost meanwhile.
func watch[T any](ctx context.Context, m *Manager, name string, hints chan<- struct{}, tried func(),
	subscribe func(done <-chan struct{}, onErr func(error)) (<-chan T, error), relevant func(T) bool) {
	onErr := func(err error) {
		if ctx.Err() == nil {
			m.log.Warn("network events", "source", name, "err", err)
		}
	}
	for first := true; ; first = false {
		done := make(chan struct{})
		events, err := subscribe(done, onErr)
		if first {
			tried()
		}
		if err != nil {
			m.log.Warn("subscribe to network events; the periodic check still runs", "source", name, "err", err, "retry", watchRetry)
		} else {
			if !first {
				hint(hints)
			}
			forward(ctx, events, hints, relevant)
		}
		close(done)
		if events != nil {
			// The subscription's goroutine closes events once it sees
			// done.
			for range events {
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// forward hints for every relevant event until ctx is done or events is
// closed.
func forward[T any](ctx context.Context, events <-chan T, hints chan<- struct{}, relevant func(T) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			if relevant(e) {
				hint(hints)
			}
		}
	}
}

func (m *Manager) subscribeLinks(done <-chan struct{}, onErr func(error)) (<-chan netlink.LinkUpdate, error) {
	ch := make(chan netlink.LinkUpdate, 64)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: true}
	if err := netlink.LinkSubscribeWithOptions(ch, done, opts); err != nil {
		return nil, err
	}
	return ch, nil
}

func (m *Manager) subscribeAddrs(done <-chan struct{}, onErr func(error)) (<-chan netlink.AddrUpdate, error) {
	ch := make(chan netlink.AddrUpdate, 64)
	opts := netlink.AddrSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: true}
	if err := netlink.AddrSubscribeWithOptions(ch, done, opts); err != nil {
		return nil, err
	}
	return ch, nil
}

// subscribeNFT monitors the changes of every nftables table; each batch
// (transaction) arrives as one MonitorEvents.
func subscribeNFT(done <-chan struct{}, _ func(error)) (<-chan *nftables.MonitorEvents, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		return nil, err
	}
	// Closing the monitor ends its goroutine, which closes events.
	go func() {
		<-done
		mon.Close()
	}()
	return events, nil
}

// linkNeedsRepair reports whether a link event may have broken the pods'
// network: the bridge or a pod veth deleted, or the bridge set down. New
// veths, which every Setup makes, are not worth a round.
func linkNeedsRepair(u netlink.LinkUpdate, bridge string) bool {
	attrs := u.Link.Attrs()
	switch {
	case u.Header.Type == unix.RTM_DELLINK:
		return attrs.Name == bridge || strings.HasPrefix(attrs.Name, vethPrefix)
	case attrs.Name == bridge:
		return attrs.Flags&net.FlagUp == 0
	}
	return false
}

// addrNeedsRepair reports whether an address event removed the gateway
// address (from the bridge, the only link that has it).
func addrNeedsRepair(u netlink.AddrUpdate, gateway netip.Addr) bool {
	addr, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	return !u.NewAddr && ok && addr.Unmap() == gateway
}

// nftNeedsRepair reports whether an nftables transaction, made by another
// process than self, touched the table named table (family ip), or could
// not be read. A monitor error (its buffer overflowed) needs a round too.
func nftNeedsRepair(e *nftables.MonitorEvents, table string, self uint32) bool {
	if e.GeneratedBy != nil {
		if e.GeneratedBy.Error != nil {
			return true
		}
		if gen, ok := e.GeneratedBy.Data.(*nftables.GenMsg); ok && gen.ProcPID == self {
			return false
		}
	}
	for _, c := range e.Changes {
		if c.Error != nil {
			return true
		}
		if t := changedTable(c.Data); t != nil && t.Name == table && t.Family == nftables.TableFamilyIPv4 {
			return true
		}
	}
	return false
}

// changedTable returns the table a monitor event's object belongs to; nil
// for objects peapod's table does not hold.
func changedTable(data any) *nftables.Table {
	switch d := data.(type) {
	case *nftables.Table:
		return d
	case *nftables.Chain:
		return d.Table
	case *nftables.Rule:
		return d.Table
	}
	return nil
}
