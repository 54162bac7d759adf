package cgroups

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups/fscommon"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/internal/proctest"
)

const cgroupRoot = "/sys/fs/cgroup"

// rootManager skips unless root, and returns a Manager on the host's
// cgroups whose Parent is unique to the test. Everything under the Parent
// is killed and removed when the test ends.
func rootManager(t testing.TB, opts Options) *Manager {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): creates cgroups under " + cgroupRoot)
	}
	opts.Parent = fmt.Sprintf("peapod-test-%d-%s", time.Now().UnixNano(), strings.ReplaceAll(t.Name(), "/", "-"))
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := errors.Join(m.GC(nil), m.backend.group(m.parent).remove()); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	return m
}

// dir returns the directory of the cgroup at path (as Path returns it):
// in the v1 hierarchy of controller, or in the unified hierarchy.
func dir(m *Manager, controller, path string) string {
	if m.Mode() == ModeV2 {
		return filepath.Join(cgroupRoot, path)
	}
	return filepath.Join(cgroupRoot, controller, path)
}

// start runs args in c the way the runtime does, and returns once args is
// executed. On v1 the process starts in the test's cgroups and waits on its
// stdin until PlaceProcess has moved it, so nothing of args runs, forks or
// allocates outside c; on v2 it is cloned into c and PlaceProcess does
// nothing.
func start(t *testing.T, c *Container, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/busybox", append([]string{"sh", "-c", `read -r _ && exec "$0" "$@"`}, args...)...)
	if fd, ok := c.CgroupFD(); ok {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	release, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := c.PlaceProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	wrapper := readFile(t, "/proc", fmt.Sprint(cmd.Process.Pid), "cmdline")
	if _, err := io.WriteString(release, "go\n"); err != nil {
		t.Fatal(err)
	}
	release.Close()
	// The command line changes at exec (and empties if args exits).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if strings.TrimSpace(string(data)) != wrapper {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v not executed 30 s after its release", args)
		}
	}
}

// procCgroups reads /proc/<pid>/cgroup (pid "self" for the caller)
// into controller → path; the cgroup2 line is under "".
func procCgroups(t *testing.T, pid string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	paths := parseProcCgroup(string(data))
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			paths[""] = p
		}
	}
	return paths
}

// managed lists the keys of procCgroups that the Manager places processes
// in: every mounted v1 subsystem, or the cgroup2 line.
func managed(m *Manager) []string {
	if m.Mode() == ModeV2 {
		return []string{""}
	}
	var keys []string
	for s := range m.backend.(*v1).subsysDirs {
		keys = append(keys, s)
	}
	return keys
}

func readFile(t *testing.T, path ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws := ee.Sys().(syscall.WaitStatus)
	return ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// waitEmpty waits for the processes of a killed pod to exit.
func waitEmpty(t *testing.T, p *Pod) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.Processes == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes left 30 s after Kill", s.Processes)
		}
	}
}

// TestRootPlaceProcess moves a process into a container cgroup and checks
// it landed there in every hierarchy while the caller stayed where it was.
func TestRootPlaceProcess(t *testing.T) {
	m := rootManager(t, Options{})
	p, ctrs := createAll(t, m)
	app := ctrs["app"]

	before := procCgroups(t, "self")
	cmd := start(t, app, "/bin/busybox", "sleep", "30")
	proctest.WaitSleeping(t, cmd.Process.Pid)
	got := procCgroups(t, fmt.Sprint(cmd.Process.Pid))
	for _, s := range managed(m) {
		if got[s] != app.Path() {
			t.Errorf("child: %q cgroup %q, want %q", s, got[s], app.Path())
		}
	}
	if diff := cmpMaps(before, procCgroups(t, "self")); diff != "" {
		t.Errorf("the caller's cgroups changed: %s", diff)
	}
	ps, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ps.Processes != 1 || ps.Threads != 1 {
		t.Errorf("pod stats: %d processes, %d threads; want 1, 1", ps.Processes, ps.Threads)
	}
	if ps.CPUUsage == 0 || ps.MemoryUsage == 0 || ps.MemoryWorkingSet > ps.MemoryUsage {
		t.Errorf("pod stats: CPU %d ns, memory %d bytes, working set %d; want the exec's CPU and memory", ps.CPUUsage, ps.MemoryUsage, ps.MemoryWorkingSet)
	}

	if err := app.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); !killed(err) {
		t.Errorf("after Kill, Wait() = %v, want SIGKILL", err)
	}
	for range 2 { // Remove is idempotent
		if err := p.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"memory", "cpu", "pids", "freezer"} {
		if _, err := os.Stat(dir(m, c, p.Path())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Remove, %s: %v, want not exist", dir(m, c, p.Path()), err)
		}
	}
}

// cmpMaps describes how two controller → path maps differ.
func cmpMaps(a, b map[string]string) string {
	var diffs []string
	for k, v := range a {
		if b[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: %q → %q", k, v, b[k]))
		}
	}
	if len(a) != len(b) {
		diffs = append(diffs, fmt.Sprintf("%d hierarchies → %d", len(a), len(b)))
	}
	return strings.Join(diffs, "; ")
}

func TestRootLimits(t *testing.T) {
	m := rootManager(t, Options{})
	p, ctrs := createAll(t, m)
	app, pod := ctrs["app"].Path(), p.Path()
	type file struct{ controller, path, name, want string }
	checks := map[string][]file{
		ModeV1: {
			{"memory", app, "memory.limit_in_bytes", "67108864"},
			{"memory", app, "memory.memsw.limit_in_bytes", "67108864"},
			{"memory", app, "memory.swappiness", "0"},
			{"cpu", app, "cpu.cfs_quota_us", "50000"},
			{"cpu", app, "cpu.cfs_period_us", "100000"},
			{"cpu", app, "cpu.shares", "512"},
			{"cpu", pod, "cpu.shares", "614"},
			{"cpu", pod, "cpu.cfs_quota_us", "-1"},
			{"pids", pod, "pids.max", "4096"},
		},
		ModeV2: {
			{"", app, "memory.max", "67108864"},
			{"", app, "memory.swap.max", "0"},
			{"", app, "cpu.max", "50000 100000"},
			{"", app, "cpu.weight", "20"},
			{"", pod, "cpu.weight", "24"},
			{"", pod, "cpu.max", "max 100000"},
			{"", pod, "pids.max", "4096"},
		},
	}
	mode := m.Mode()
	if mode == ModeHybrid {
		mode = ModeV1
	}
	for _, f := range checks[mode] {
		path := filepath.Join(dir(m, f.controller, f.path), f.name)
		if f.name == "memory.swap.max" && !exists(path) {
			t.Log("no swap accounting: memory.swap.max not checked")
			continue
		}
		if got := readFile(t, path); got != f.want {
			t.Errorf("%s = %q, want %q", path, got, f.want)
		}
	}
	s, err := ctrs["app"].Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryLimit != 64<<20 || s.CPUQuota != 50000 || s.CPUPeriod != 100000 {
		t.Errorf("Stats() limits = %d %d %d, want 67108864 50000 100000", s.MemoryLimit, s.CPUQuota, s.CPUPeriod)
	}

	// Reopening (an agent restart) converges on the same values.
	if _, err := m.Pod(testUID, testPod()); err != nil {
		t.Fatal(err)
	}
	if s, err := ctrs["app"].Stats(); err != nil || s.MemoryLimit != 64<<20 {
		t.Errorf("after reopen, Stats() = %+v, %v; want the same memory limit", s, err)
	}
}

func TestRootOOMKill(t *testing.T) {
	m := rootManager(t, Options{})
	p, err := m.Pod(testUID, &corev1.Pod{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Container("hog", &corev1.Container{Resources: corev1.ResourceRequirements{Limits: res("", "32Mi")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// dd's 64 MiB buffer is filled from /dev/zero: real, touched memory.
	cmd := start(t, c, "/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	if err := cmd.Wait(); !killed(err) {
		t.Fatalf("allocator: Wait() = %v, want SIGKILL by the OOM killer", err)
	}
	n, err := c.OOMKills()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("OOMKills() = %d, want 1", n)
	}
	if s, err := c.Stats(); err != nil || s.OOMKills != 1 {
		t.Errorf("Stats().OOMKills = %v (%v), want 1", s, err)
	}
}

func TestRootPidsLimit(t *testing.T) {
	const limit = 16
	m := rootManager(t, Options{PodPidsLimit: limit})
	p, err := m.Pod(testUID, &corev1.Pod{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Container("bomb", &corev1.Container{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Forks without end until a fork fails, which busybox sh survives
	// only by exiting with status 2.
	cmd := start(t, c, "/bin/busybox", "sh", "-c", "while :; do /bin/busybox sleep 30 & done")
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("fork loop: Wait() = %v, want exit status 2 from a failed fork", err)
	}
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Threads == 0 || s.Threads >= limit {
		t.Errorf("pod holds %d tasks, want the loop's sleeps, fewer than %d", s.Threads, limit)
	}
	// Linux 6.9+ counts the failure where the fork happened, older
	// kernels where the limit is.
	if forkFailures(t, dir(m, "pids", p.Path()))+forkFailures(t, dir(m, "pids", c.Path())) == 0 {
		t.Error("pids.events: no fork failure counted")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, p)
}

// forkFailures reads the "max" count of pids.events in dir.
func forkFailures(t *testing.T, dir string) uint64 {
	t.Helper()
	n, err := fscommon.GetValueByKey(dir, "pids.events", "max")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRootGC(t *testing.T) {
	m := rootManager(t, Options{})
	keep, err := m.Pod("keep", &corev1.Pod{})
	if err != nil {
		t.Fatal(err)
	}
	stale, err := m.Pod("stale", &corev1.Pod{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := stale.Container("c", &corev1.Container{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cmd := start(t, c, "/bin/busybox", "sleep", "30")

	if err := m.GC(map[types.UID]bool{"keep": true}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); !killed(err) {
		t.Errorf("process of the stale pod: Wait() = %v, want SIGKILL", err)
	}
	if _, err := os.Stat(dir(m, "memory", stale.Path())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale pod cgroup: %v, want removed", err)
	}
	if _, err := os.Stat(dir(m, "memory", keep.Path())); err != nil {
		t.Errorf("live pod cgroup: %v, want kept", err)
	}
	if err := m.RemovePod("keep"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir(m, "memory", keep.Path())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after RemovePod: %v, want removed", err)
	}
	if err := m.RemovePod("never-created"); err != nil {
		t.Errorf("RemovePod of a pod without a cgroup: %v", err)
	}
}

// BenchmarkPlaceProcess measures moving a process into a container's
// cgroups, the cost the v1 path adds to every container start (while the
// init stage starts up, mostly off the start's critical path).
func BenchmarkPlaceProcess(b *testing.B) {
	m := rootManager(b, Options{})
	p, err := m.Pod(testUID, &corev1.Pod{})
	if err != nil {
		b.Fatal(err)
	}
	var ctrs [2]*Container
	for i := range ctrs {
		if ctrs[i], err = p.Container(fmt.Sprint("c", i), &corev1.Container{}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ctrs[i].Close() })
	}
	cmd := exec.Command("/bin/busybox", "sleep", "60")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Back and forth: a move into the cgroup the process is in already
	// would cost less than a real one. The pause lets the lock every move
	// takes go idle again, as it is between two starts: a move that
	// follows another closely skips the RCU grace period that makes up
	// most of the cost (here about 0.3 ms back to back, 6 ms after 50 ms).
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		time.Sleep(50 * time.Millisecond)
		b.StartTimer()
		if err := ctrs[i%2].PlaceProcess(cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
	}
}
