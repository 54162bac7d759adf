package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"
)

// The floor is the least work that gives a pod what peapod gives it, used as
// the physical limit: a watcher on the manifest directory (inotify), and per
// pod a pinned net+ipc+uts namespace, a veth created straight into it
// (Veth.PeerNamespace) with an address, and per container one clone+exec
// with new user+pid+mnt+cgroup namespaces, chrooted into the busybox rootfs.
// No overlay, no /proc or /dev mounts, no cgroup limits, no logs, no shim.

// floorSystem drives a `bench floor` process.
type floorSystem struct {
	dir, state, prefix string
	cmd                *exec.Cmd
	done               chan struct{}
}

func openFloor(ctx context.Context, log *slog.Logger, o options) (system, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f := &floorSystem{
		dir:    filepath.Join(o.work, "floor", "manifests"),
		state:  filepath.Join(o.run, "floor"),
		prefix: fmt.Sprintf("pbf%d", os.Getpid()%10000),
		done:   make(chan struct{}),
	}
	for _, d := range []string{f.dir, f.state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// The floor runs containers straight in a copy of the rootfs (no
	// overlay) with the one device node a shell needs for background jobs.
	rootfs := filepath.Join(o.work, "floor", "rootfs")
	if out, err := exec.Command("cp", "-a", o.rootfs, rootfs).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy rootfs: %w: %s", err, out)
	}
	if err := unix.Mknod(filepath.Join(rootfs, "dev", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		return nil, fmt.Errorf("mknod dev/null: %w", err)
	}
	logf, err := os.Create(filepath.Join(o.work, "floor", "floor.log"))
	if err != nil {
		return nil, err
	}
	f.cmd = exec.Command(self, "floor", "--dir", f.dir, "--state", f.state, "--rootfs", rootfs, "--link-prefix", f.prefix)
	f.cmd.Stdout, f.cmd.Stderr = logf, logf
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := f.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { f.cmd.Wait(); logf.Close(); close(f.done) }()
	ready := filepath.Join(f.state, "ready")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return f, nil
		}
		if time.Now().After(deadline) {
			f.close(ctx)
			return nil, fmt.Errorf("floor agent not ready after 10s; see %s", logf.Name())
		}
	}
}

func (f *floorSystem) name() string { return "floor" }

func (f *floorSystem) start(ctx context.Context, pods []pod) error {
	return dropManifests(f.dir, pods, "floor")
}

func (f *floorSystem) stop(ctx context.Context, pods []pod) error {
	return removeManifests(f.dir, pods)
}

func (f *floorSystem) agentPID() int { return f.cmd.Process.Pid }

func (f *floorSystem) overhead() []int { return []int{f.cmd.Process.Pid} }

func (f *floorSystem) residue() map[string]int {
	links, _ := netlink.LinkList()
	n := 0
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, f.prefix) {
			n++
		}
	}
	return map[string]int{"mounts": mountsUnder(f.state), "links": n, "pod dirs": dirEntries(f.state) - 1}
}

func (f *floorSystem) close(ctx context.Context) error {
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
		return nil
	case <-time.After(30 * time.Second):
		f.cmd.Process.Kill()
		return errors.New("floor agent did not stop in 30s; killed")
	}
}

// floorAgent is the `bench floor` process.
type floorAgent struct {
	dir, state, rootfs, prefix string
	host                       map[string]int // host namespace fds: net, ipc, uts
	mu                         sync.Mutex
	pods                       map[string]*floorPod
	seq                        int
}

type floorPod struct {
	ready chan struct{} // closed once started (or failed)
	procs []*exec.Cmd
	exits []chan struct{}
	dir   string
}

func floorMain(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	a := &floorAgent{pods: map[string]*floorPod{}, host: map[string]int{}}
	fs.StringVar(&a.dir, "dir", "", "manifest directory")
	fs.StringVar(&a.state, "state", "", "state directory")
	fs.StringVar(&a.rootfs, "rootfs", "", "busybox rootfs")
	fs.StringVar(&a.prefix, "link-prefix", "pbf", "host-side veth name prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, ns := range []string{"net", "ipc", "uts"} {
		fd, err := unix.Open("/proc/self/ns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		a.host[ns] = fd
	}
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	if _, err := unix.InotifyAddWatch(in, a.dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_MOVED_FROM|unix.IN_DELETE); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		a.stopAll()
		os.Exit(0)
	}()
	if err := os.WriteFile(filepath.Join(a.state, "ready"), nil, 0o600); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(in, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for off := 0; off < n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".yaml") {
				continue
			}
			if ev.Mask&(unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0 {
				a.add(name)
			} else {
				go a.remove(name)
			}
		}
	}
}

func (a *floorAgent) add(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.pods[name]; ok {
		return
	}
	a.seq++
	p := &floorPod{ready: make(chan struct{}), dir: filepath.Join(a.state, fmt.Sprint(a.seq))}
	a.pods[name] = p
	seq := a.seq
	go func() {
		defer close(p.ready)
		if err := a.startPod(name, seq, p); err != nil {
			fmt.Fprintf(os.Stderr, "start %s: %v\n", name, err)
		}
	}()
}

func (a *floorAgent) remove(name string) {
	a.mu.Lock()
	p, ok := a.pods[name]
	delete(a.pods, name)
	a.mu.Unlock()
	if ok {
		a.stopPod(p)
	}
}

func (a *floorAgent) stopAll() {
	a.mu.Lock()
	pods := a.pods
	a.pods = map[string]*floorPod{}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() { a.stopPod(p) })
	}
	wg.Wait()
}

type floorManifest struct {
	Spec struct {
		Containers []struct {
			Command []string `json:"command"`
		} `json:"containers"`
	} `json:"spec"`
}

// startPod creates the pod's namespaces and network, then its containers,
// all from one locked thread that is inside the pod's net/ipc/uts
// namespaces, and then puts that thread back into the host's.
func (a *floorAgent) startPod(name string, seq int, p *floorPod) error {
	data, err := os.ReadFile(filepath.Join(a.dir, name))
	if err != nil {
		return err
	}
	var m floorManifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	runtime.LockOSThread()
	// The unshare makes this thread the pod's first member; everything
	// below runs on it, so it must not go back to the scheduler until it
	// is in the host namespaces again. On a failure to return, the thread
	// stays locked and Go discards it with the goroutine.
	if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS); err != nil {
		return err
	}
	err = a.buildPod(seq, p, m)
	for _, ns := range []string{"net", "ipc", "uts"} {
		if serr := unix.Setns(a.host[ns], 0); serr != nil {
			return errors.Join(err, serr)
		}
	}
	runtime.UnlockOSThread()
	return err
}

// buildPod runs on the locked thread inside the new namespaces.
func (a *floorAgent) buildPod(seq int, p *floorPod, m floorManifest) error {
	for _, ns := range []string{"net", "ipc", "uts"} {
		pin := filepath.Join(p.dir, ns)
		if err := os.WriteFile(pin, nil, 0o600); err != nil {
			return err
		}
		if err := unix.Mount(fmt.Sprintf("/proc/thread-self/ns/%s", ns), pin, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin %s: %w", ns, err)
		}
	}
	if err := a.podNetwork(seq); err != nil {
		return err
	}
	base := uint32(1<<29) + uint32(seq%4096)*65536 // below peapod's default range
	for _, c := range m.Spec.Containers {
		cmd := &exec.Cmd{Path: "/bin/" + c.Command[0], Args: c.Command, Dir: "/", Env: []string{"PATH=/bin:/sbin"}}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWCGROUP,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: 65536}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: 65536}},
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0},
			Chroot:                     a.rootfs,
			Setsid:                     true,
			Pdeathsig:                  syscall.SIGKILL, // the thread survives: it is unlocked, not discarded
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("container %v: %w", c.Command, err)
		}
		done := make(chan struct{})
		go func() {
			err := cmd.Wait()
			fmt.Fprintf(os.Stderr, "pod %d: container %v exited: %v\n", seq, c.Command, err)
			close(done)
		}()
		p.procs = append(p.procs, cmd)
		p.exits = append(p.exits, done)
	}
	return nil
}

// podNetwork creates eth0 in the current (pod) netns with its peer created
// straight in the host netns, gives it an address and brings both ends up.
func (a *floorAgent) podNetwork(seq int) error {
	hostName := fmt.Sprintf("%s%d", a.prefix, seq)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: hostName, PeerNamespace: netlink.NsFd(a.host["net"])}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", hostName, err)
	}
	eth0, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	// The address only exists inside the pod netns: no route on the host.
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 255, byte(seq/250), byte(seq%250+2)), Mask: net.CIDRMask(16, 32)}}
	if err := netlink.AddrAdd(eth0, addr); err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{lo, eth0} {
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(a.host["net"]))
	if err != nil {
		return err
	}
	defer h.Close()
	peer, err := h.LinkByName(hostName)
	if err != nil {
		return err
	}
	return h.LinkSetUp(peer)
}

// stopPod sends SIGTERM to every container, SIGKILL after 10 s, then drops
// the namespace pins; the kernel deletes the veth with the netns.
func (a *floorAgent) stopPod(p *floorPod) {
	<-p.ready
	for _, c := range p.procs {
		c.Process.Signal(syscall.SIGTERM)
	}
	for i, done := range p.exits {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.procs[i].Process.Kill()
			<-done
		}
	}
	for _, ns := range []string{"net", "ipc", "uts"} {
		unix.Unmount(filepath.Join(p.dir, ns), unix.MNT_DETACH)
	}
	os.RemoveAll(p.dir)
}
