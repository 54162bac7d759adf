package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/agent"
)

// testAgent is one `peapod agent` on directories, a bridge, a pod CIDR and
// a cgroup parent of its own, so that it keeps out of the way of anything
// else on the machine, and everything the leak check looks at is its own.
type testAgent struct {
	name                         string // the mode, for messages
	bin, image                   string
	dir                          string // everything on disk lives under it
	manifests, root, state, logs string
	bridge, cgroupParent         string
	cidr                         netip.Prefix
	metrics                      string // HOST:PORT
	logPath                      string

	cmd  *exec.Cmd
	done chan struct{}
	http *http.Client // the status API's, made on first use
	// starts and kills count the agent's starts and kill -9s.
	starts, kills int
	// uids is every pod UID the agent reported: the leak check looks for
	// their veths and directories.
	uids map[string]bool
	// baseline is what the agent holds with no pod: the leak check
	// compares against it.
	baseline *holdings
}

// newTestAgent prepares an agent for mode under work; nothing runs yet.
func newTestAgent(o *options, mode string, idx int) (*testAgent, error) {
	dir := filepath.Join(o.work, mode)
	a := &testAgent{
		name: mode, bin: o.peapod, image: "rootfs:" + o.rootfs, dir: dir,
		manifests: filepath.Join(dir, "manifests"), root: filepath.Join(dir, "root"),
		state: filepath.Join(dir, "state"), logs: filepath.Join(dir, "logs"),
		bridge:       fmt.Sprintf("pch%s%d", o.id, idx),
		cgroupParent: fmt.Sprintf("peapod-chaos-%s-%s", o.id, mode),
		logPath:      filepath.Join(dir, "agent.log"),
		uids:         map[string]bool{},
	}
	var err error
	if a.cidr, err = freePodCIDR(); err != nil {
		return nil, err
	}
	for _, d := range []string{a.manifests, a.root, a.state, a.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *testAgent) String() string {
	return fmt.Sprintf("agent %s (bridge %s, pod CIDR %s, cgroup parent %s, dir %s)", a.name, a.bridge, a.cidr, a.cgroupParent, a.dir)
}

// start runs the agent and waits until /healthz answers.
func (a *testAgent) start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	a.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	a.cmd = exec.Command(a.bin, "agent",
		"--manifests", a.manifests, "--root", a.root, "--state", a.state, "--log-dir", a.logs,
		"--metrics-addr", a.metrics, "--bridge", a.bridge, "--pod-cidr", a.cidr.String(),
		"--cgroup-parent", a.cgroupParent, "--log-format", "json", "--log-level", "debug")
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// Its own process group keeps a Ctrl-C of run.sh away from it: this
	// program stops it in order (pods first). Pdeathsig stops it if this
	// program is killed.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %v: %w", a, err)
	}
	a.starts++
	done := make(chan struct{})
	a.done = done
	go func(cmd *exec.Cmd) { cmd.Wait(); logf.Close(); close(done) }(a.cmd)
	return a.waitHealthy(ctx, 60*time.Second)
}

func (a *testAgent) waitHealthy(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, "agent /healthz to answer 200", func() error {
		select {
		case <-a.done:
			return permanent(fmt.Errorf("agent exited: %v; log tail: %s", a.cmd.ProcessState, a.logTail(10)))
		default:
		}
		resp, err := http.Get("http://" + a.metrics + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

func (a *testAgent) running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// alive fails when the agent exited on its own (a crash).
func (a *testAgent) alive() error {
	if a.cmd != nil && !a.running() {
		return fmt.Errorf("the agent exited by itself: %v; log tail:\n%s", a.cmd.ProcessState, a.logTail(20))
	}
	return nil
}

// kill9 kills the agent with SIGKILL and waits for it to be gone.
func (a *testAgent) kill9() {
	if !a.running() {
		return
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	a.kills++
	a.cmd = nil
}

// stop stops the agent with SIGTERM (pods keep running, by design).
func (a *testAgent) stop() error {
	if !a.running() {
		a.cmd = nil
		return nil
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		a.cmd = nil
		return nil
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
		a.cmd = nil
		return errors.New("the agent did not exit within 30s of SIGTERM; killed")
	}
}

func (a *testAgent) pid() int {
	if !a.running() {
		return 0
	}
	return a.cmd.Process.Pid
}

// writeManifest writes a manifest atomically (temp file, rename), as an
// editor or a config-management tool does.
func (a *testAgent) writeManifest(name string, content []byte) error {
	tmp := filepath.Join(a.manifests, "."+name+".tmp")
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(a.manifests, name))
}

func (a *testAgent) removeManifest(name string) error {
	err := os.Remove(filepath.Join(a.manifests, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// pods asks the agent for its pods and remembers their UIDs.
func (a *testAgent) pods(ctx context.Context) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := a.status(ctx, "/v1/pods", &list); err != nil {
		return nil, err
	}
	for _, p := range list.Items {
		a.uids[string(p.UID)] = true
	}
	return list.Items, nil
}

// noteUIDs remembers the pods the agent has directories for, including
// those it created and removed between two status reads.
func (a *testAgent) noteUIDs() {
	entries, _ := os.ReadDir(filepath.Join(a.state, "pods"))
	for _, e := range entries {
		if e.IsDir() {
			a.uids[e.Name()] = true
		}
	}
}

// status GETs path from the agent's status API into v. It keeps one
// connection for the whole run rather than using agent.Client, which
// opens one per call and never closes it: the agent would hold an open
// file per call and the soak's count of its files would measure this
// program instead of the agent.
func (a *testAgent) status(ctx context.Context, path string, v any) error {
	if a.http == nil {
		sock := filepath.Join(a.state, agent.SocketName)
		a.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			MaxIdleConns: 1,
		}}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://peapod"+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("status API of %s: %w", a.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status API of %s: GET %s: %s", a.name, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// podMap is pods keyed by name (every pod of this program is in default).
func (a *testAgent) podMap(ctx context.Context) (map[string]corev1.Pod, error) {
	list, err := a.pods(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]corev1.Pod{}
	for _, p := range list {
		m[p.Name] = p
	}
	return m, nil
}

func (a *testAgent) rejected(ctx context.Context) ([]agent.RejectedFile, error) {
	var files []agent.RejectedFile
	return files, a.status(ctx, "/v1/rejected", &files)
}

// waitPods waits until cond holds for the agent's pods.
func (a *testAgent) waitPods(ctx context.Context, timeout time.Duration, what string, cond func(map[string]corev1.Pod) error) error {
	return poll(ctx, timeout, what, func() error {
		if err := a.alive(); err != nil {
			return permanent(err)
		}
		m, err := a.podMap(ctx)
		if err != nil {
			return err
		}
		return cond(m)
	})
}

// waitNoPods waits until the agent reports no pod.
func (a *testAgent) waitNoPods(ctx context.Context, timeout time.Duration) error {
	return a.waitPods(ctx, timeout, "every pod to be gone", func(m map[string]corev1.Pod) error {
		if len(m) > 0 {
			return fmt.Errorf("%d pods left: %v", len(m), sortedKeys(m))
		}
		return nil
	})
}

// memory returns the agent's resident memory and its high-water mark, in
// bytes.
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// openFDs counts the open file descriptors of pid.
func openFDs(pid int) int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(e)
}

// logTail returns the last n lines of the agent's log.
func (a *testAgent) logTail(n int) string {
	b, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// teardown removes every pod and stops the agent; then it kills any
// process of this agent left, and removes what the agent keeps across
// its own restarts by design (bridge, nftables table, cgroup parent). It
// is best effort and returns what went wrong; it runs on success, on
// failure and on SIGINT alike, with its own deadline.
func (a *testAgent) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	entries, _ := os.ReadDir(a.manifests)
	for _, e := range entries {
		os.Remove(filepath.Join(a.manifests, e.Name()))
	}
	if !a.running() {
		if err := a.start(ctx); err != nil {
			errs = append(errs, fmt.Errorf("teardown: %w", err))
		}
	}
	if a.running() {
		if err := a.waitNoPods(ctx, 2*time.Minute); err != nil {
			errs = append(errs, fmt.Errorf("teardown: %w", err))
		}
	}
	if err := a.stop(); err != nil {
		errs = append(errs, err)
	}
	// The spare shim exits by itself once the agent is gone.
	poll(ctx, 10*time.Second, "", func() error {
		if len(a.processes()) > 0 {
			return errors.New("processes left")
		}
		return nil
	})
	for _, p := range a.processes() {
		syscall.Kill(p.pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("teardown: killed process %d left behind: %s", p.pid, p.cmdline))
	}
	if l, err := netlink.LinkByName(a.bridge); err == nil {
		netlink.LinkDel(l)
	}
	if c, err := nftables.New(); err == nil {
		c.DelTable(&nftables.Table{Name: a.bridge, Family: nftables.TableFamilyIPv4})
		c.Flush() // fails when the table is already gone
	}
	for _, d := range cgroupDirs(a.cgroupParent) {
		removeCgroupTree(d)
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes a cgroup directory, children first; a cgroup
// with processes stays (and the leak check reports it).
func removeCgroupTree(dir string) {
	var all []string
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			all = append(all, path)
		}
		return nil
	})
	for _, d := range slices.Backward(all) {
		os.Remove(d)
	}
}

// cgroupDirs returns the cgroup directories named rel in every hierarchy
// mounted under /sys/fs/cgroup (the v2 root, or each v1 controller).
func cgroupDirs(rel string) []string {
	dirs := []string{filepath.Join("/sys/fs/cgroup", rel)}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), rel))
		}
	}
	var out []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// unmountUnder detaches every mount at or under dir, deepest first.
func unmountUnder(dir string) int {
	mnts := mountsUnder(dir)
	slices.SortFunc(mnts, func(x, y string) int { return len(y) - len(x) })
	for _, m := range mnts {
		unix.Unmount(m, unix.MNT_DETACH)
	}
	return len(mnts)
}

// mountsUnder lists the mount points at or under dir in this mount
// namespace (the agent's: it runs in the host's).
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}
