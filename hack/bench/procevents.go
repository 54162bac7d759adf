package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procEvents follows every exec and exit on the machine through the
// kernel's process events connector (cn_proc) and keeps which marker
// processes run. It replaces polling /proc for the detector: a scan every
// few milliseconds kept one of the machine's two CPUs busy while the
// systems under test started, and its resolution was the scan's duration.
// The connector reports an exec as it completes; the detector reads the
// new process's command line then, once.
//
// Events can be lost when the socket's buffer overflows; procEvents then
// says so (lost) and the detector falls back to scanning.
type procEvents struct {
	fd int

	mu      sync.Mutex
	running map[int]marked // by PID: marker processes seen exec'd, not yet exited
	changed chan struct{}  // closed and replaced at every change of running
	lost    bool
	events  int
}

type marked struct {
	marker string
	sleep  bool
}

// cn_proc's wire format (linux/connector.h, linux/cn_proc.h).
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventExec     = 0x00000002
	procEventExit     = 0x80000000
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
)

// listenProcEvents subscribes to process events. It fails where the kernel
// lacks CONFIG_PROC_EVENTS or the caller is not root.
func listenProcEvents() (*procEvents, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("open process events connector: %w", err)
	}
	p := &procEvents{fd: fd, running: map[int]marked{}, changed: make(chan struct{})}
	// Room for bursts of events (50 pods starting at once), and a timeout
	// so that the reader can notice it should stop.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("process events connector: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind process events connector: %w", err)
	}
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	le := binary.LittleEndian
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], unix.NLMSG_DONE)
	le.PutUint32(msg[12:], uint32(unix.Getpid()))
	le.PutUint32(msg[16:], cnIdxProc)
	le.PutUint32(msg[20:], cnValProc)
	le.PutUint16(msg[32:], 4)
	le.PutUint32(msg[36:], procCnMcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to process events: %w", err)
	}
	return p, nil
}

// run reads events until ctx is done, then closes the socket.
func (p *procEvents) run(ctx context.Context) {
	defer unix.Close(p.fd)
	buf := make([]byte, 64<<10)
	cmd := make([]byte, 4096)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			p.mu.Lock()
			p.lost = true
			p.mu.Unlock()
			continue
		case err != nil:
			p.mu.Lock()
			p.lost = true
			p.mu.Unlock()
			return
		}
		p.handle(buf[:n], cmd)
	}
}

// handle processes the netlink messages of one datagram.
func (p *procEvents) handle(b, cmd []byte) {
	le := binary.LittleEndian
	for len(b) >= nlmsgHdrLen {
		l := int(le.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			return
		}
		ev := b[nlmsgHdrLen:l]
		b = b[(l+3)&^3:]
		// proc_event: what, cpu, timestamp_ns, then the event's data.
		if len(ev) < cnMsgLen+16+8 {
			continue
		}
		what := le.Uint32(ev[cnMsgLen:])
		pid := int(le.Uint32(ev[cnMsgLen+16:]))
		tgid := int(le.Uint32(ev[cnMsgLen+20:]))
		if pid != tgid {
			continue // a thread
		}
		switch what {
		case procEventExec:
			m, sleep := markerOf(strconv.Itoa(pid), cmd)
			p.update(func() bool {
				p.events++
				if m == "" {
					return false
				}
				p.running[pid] = marked{m, sleep}
				return true
			})
		case procEventExit:
			p.update(func() bool {
				p.events++
				_, ok := p.running[pid]
				delete(p.running, pid)
				return ok
			})
		}
	}
}

// update runs f under the lock and wakes the waiters if it changed running.
func (p *procEvents) update(f func() bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f() {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// state returns which of want run (sleeps only, with sleepOnly), whether
// events were lost, and a channel closed at the next change.
func (p *procEvents) state(want map[string]bool, sleepOnly bool) (found map[string]bool, lost bool, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	found = map[string]bool{}
	for _, m := range p.running {
		if want[m.marker] && (m.sleep || !sleepOnly) {
			found[m.marker] = true
		}
	}
	return found, p.lost, p.changed
}

// count returns how many events were processed.
func (p *procEvents) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events
}
