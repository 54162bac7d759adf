package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// peapodSystem drives `peapod agent` on temp directories.
type peapodSystem struct {
	v                            variant
	log                          *slog.Logger
	bin, image                   string
	manifests, root, state, logs string
	metrics                      string // HOST:PORT
	bridge, cgroupParent         string // "" when the agent has no such flag
	cmd                          *exec.Cmd
	done                         chan struct{}
	running                      map[string]pod // dropped and not yet removed
}

// variant is one way of running peapod: the system's name, the image its
// pods run, and what keeps its agent apart from another variant's.
type variant struct {
	name, image          string
	bridge, cgroupParent string // prefixes, the run's ID appended
	usernsRange          string
	// flags are the agent's extra flags, passed when its --help has them.
	flags []string
}

func openPeapod(ctx context.Context, log *slog.Logger, o options) (system, error) {
	return openPeapodVariant(ctx, log, o, variant{
		name: "peapod", image: "rootfs:" + o.rootfs,
		bridge: "pbb", cgroupParent: "peapod-bench-",
		// The top 2^28 IDs of the default range: other agents on the
		// machine (tests) mostly take theirs from the bottom.
		usernsRange: "1879048192-2147483647",
	})
}

// openPeapodImage runs the same pods as openPeapod from a five-layer OCI
// image of the same busybox files (oci: transport, imported into the
// agent's store by the first pod, before anything is measured), to compare
// a start from cached image layers with a start from a rootfs directory.
func openPeapodImage(ctx context.Context, log *slog.Logger, o options) (system, error) {
	layout := filepath.Join(o.work, "image-layout")
	if err := writeLayeredImage(layout, o.rootfs, 5); err != nil {
		return nil, fmt.Errorf("build the five-layer image: %w", err)
	}
	return openPeapodVariant(ctx, log, o, variant{
		name: "peapod-image", image: "oci:" + layout,
		bridge: "pbi", cgroupParent: "peapod-bench-img-",
		usernsRange: "1610612736-1879048191",
	})
}

// openPeapodNoSeccomp runs the same pods as openPeapod without the
// default seccomp filter, to measure what the filter costs a start.
func openPeapodNoSeccomp(ctx context.Context, log *slog.Logger, o options) (system, error) {
	return openPeapodVariant(ctx, log, o, variant{
		name: "peapod-noseccomp", image: "rootfs:" + o.rootfs,
		bridge: "pbn", cgroupParent: "peapod-bench-nosc-",
		usernsRange: "1342177280-1610612735",
		flags:       []string{"--seccomp-default=false"},
	})
}

func openPeapodVariant(ctx context.Context, log *slog.Logger, o options, v variant) (system, error) {
	dir := filepath.Join(o.work, v.name)
	p := &peapodSystem{
		v: v, log: log, bin: o.peapod, image: v.image,
		manifests: filepath.Join(dir, "manifests"), root: filepath.Join(dir, "root"),
		state: filepath.Join(o.run, v.name), logs: filepath.Join(dir, "logs"),
		done: make(chan struct{}), running: map[string]pod{},
	}
	for _, d := range []string{p.manifests, p.root, p.state, p.logs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if p.bin == "" {
		p.bin = filepath.Join(dir, "peapod")
		build := exec.CommandContext(ctx, "go", "build", "-o", p.bin, "./cmd/peapod")
		build.Dir, build.Env = o.repo, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build ./cmd/peapod: %w: %s", err, firstLines(string(out), 5))
		}
	}
	args, err := p.agentArgs(ctx)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	log.Info("starting agent", "args", strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	if err := p.waitHealthy(30 * time.Second); err != nil {
		p.close(ctx)
		b, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("%w; agent log: %s", err, firstLines(string(b), 10))
	}
	return p, nil
}

// agentArgs returns the agent's command line. Flags that only some versions
// of the agent have are passed when its --help lists them, with values unique
// to this run so that the agent keeps out of the way of tests running beside.
func (p *peapodSystem) agentArgs(ctx context.Context) ([]string, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"agent", "--manifests", p.manifests, "--root", p.root, "--state", p.state, "--log-dir", p.logs, "--metrics-addr", p.metrics}
	help, _ := exec.CommandContext(ctx, p.bin, "agent", "--help").CombinedOutput()
	has := func(flag string) bool { return strings.Contains(string(help), "--"+flag+" ") }
	id := os.Getpid() % 10000
	if has("bridge") {
		p.bridge = fmt.Sprintf("%s%d", p.v.bridge, id)
		args = append(args, "--bridge", p.bridge)
	}
	if has("pod-cidr") {
		cidr, err := freeCIDR()
		if err != nil {
			return nil, err
		}
		args = append(args, "--pod-cidr", cidr)
	}
	if has("userns-range") {
		args = append(args, "--userns-range", p.v.usernsRange)
	}
	for _, f := range p.v.flags {
		name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !has(name) {
			return nil, fmt.Errorf("this agent has no --%s", name)
		}
		args = append(args, f)
	}
	if has("cgroup-parent") {
		p.cgroupParent = fmt.Sprintf("%s%d", p.v.cgroupParent, id)
		args = append(args, "--cgroup-parent", p.cgroupParent)
	}
	return args, nil
}

func (p *peapodSystem) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + p.metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("agent exited: %v", p.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/healthz on %s not OK after %s", p.metrics, timeout)
		}
	}
}

func (p *peapodSystem) name() string { return p.v.name }

func (p *peapodSystem) start(ctx context.Context, pods []pod) error {
	for _, x := range pods {
		p.running[x.name] = x
	}
	return dropManifests(p.manifests, pods, p.image)
}

func (p *peapodSystem) stop(ctx context.Context, pods []pod) error {
	for _, x := range pods {
		delete(p.running, x.name)
	}
	return removeManifests(p.manifests, pods)
}

func (p *peapodSystem) agentPID() int { return p.cmd.Process.Pid }

// overhead is the agent and its shims: every process running the peapod
// binary or the agent's sealed in-memory copy of it (/memfd:...) whose
// command line names this agent's state directory.
func (p *peapodSystem) overhead() []int {
	return pidsWhere(func(pid int, exe string, argv []string) bool {
		if pid == p.cmd.Process.Pid {
			return true
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		return (exe == p.bin || strings.HasPrefix(exe, "/memfd:")) && strings.Contains(strings.Join(argv, " "), p.state)
	})
}

func (p *peapodSystem) residue() map[string]int {
	r := map[string]int{
		"mounts":   mountsUnder(p.state, p.root),
		"pod dirs": dirEntries(filepath.Join(p.state, "pods")) + dirEntries(filepath.Join(p.root, "pods")),
	}
	if p.bridge != "" {
		r["bridge ports"] = bridgePorts(p.bridge)
	}
	if p.cgroupParent != "" {
		for _, h := range []string{"memory", "pids", "cpu", "unified"} {
			r["cgroups"] += subdirs(filepath.Join("/sys/fs/cgroup", h, p.cgroupParent))
		}
	}
	return r
}

func (p *peapodSystem) scrapeMetrics(ctx context.Context) (time.Duration, int, error) {
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metrics+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("/metrics: %s", resp.Status)
	}
	return time.Since(t0), int(n), err
}

// close removes every pod still dropped, waits for them to go, then stops
// the agent (pods outlive the agent by design, so order matters), and kills
// any shim left.
func (p *peapodSystem) close(ctx context.Context) error {
	var errs []error
	if len(p.running) > 0 {
		var pods []pod
		for _, x := range p.running {
			pods = append(pods, x)
		}
		p.stop(ctx, pods)
		if _, err := waitMarkers(ctx, time.Now(), time.Minute, markersOf(pods), false, &scanStats{}); err != nil {
			errs = append(errs, err)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		errs = append(errs, errors.New("agent did not stop in 30s; killed"))
	}
	for _, pid := range p.overhead() {
		syscall.Kill(pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("peapod process %d outlived the agent; killed", pid))
	}
	return errors.Join(append(errs, p.removeShared())...)
}

// removeShared deletes what the agent keeps across its own restarts, by
// design, and this run named uniquely: the bridge, its nftables table and
// the cgroup parent in every hierarchy.
func (p *peapodSystem) removeShared() error {
	var errs []error
	if p.bridge != "" {
		if l, err := netlink.LinkByName(p.bridge); err == nil {
			errs = append(errs, netlink.LinkDel(l))
		}
		if exec.Command("nft", "list", "table", "ip", p.bridge).Run() == nil {
			errs = append(errs, exec.Command("nft", "delete", "table", "ip", p.bridge).Run())
		}
	}
	if p.cgroupParent != "" {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", p.cgroupParent))
		for _, d := range dirs {
			var all []string
			filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					all = append(all, path)
				}
				return nil
			})
			for i := len(all) - 1; i >= 0; i-- { // children first
				if err := os.Remove(all[i]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeCIDR picks a 10.x.0.0/16 that no route on the host overlaps.
func freeCIDR() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", err
	}
	for range 100 {
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.%d.0.0/16", 100+rand.IntN(150)))
		free := true
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			if ones, _ := r.Dst.Mask.Size(); ones == 0 {
				continue // the default route
			}
			if r.Dst.Contains(cand.IP) || cand.Contains(r.Dst.IP) {
				free = false
			}
		}
		if free {
			return cand.String(), nil
		}
	}
	return "", errors.New("no free 10.x.0.0/16")
}

// bridgePorts counts the links whose master is the named bridge.
func bridgePorts(bridge string) int {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return 0
	}
	links, _ := netlink.LinkList()
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], " | ")
}
