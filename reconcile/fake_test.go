package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	testclock "k8s.io/utils/clock/testing"
)

// transcript records the calls of the fake runtime and network, in order.
type transcript struct {
	mu    sync.Mutex
	calls []string
}

func (t *transcript) add(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, fmt.Sprintf(format, args...))
}

func (t *transcript) get() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.calls)
}

// fakeRuntime simulates sandboxes and containers in memory. Containers run
// until a test exits them.
type fakeRuntime struct {
	clock  *testclock.FakeClock
	log    *transcript
	events chan types.UID

	mu      sync.Mutex
	pods    map[types.UID]*PodState
	lists   int
	listErr error
	errs    map[string]error // by call and UID (or UID/container), e.g. "create uid"
	blocked map[types.UID]chan struct{}
	// rendezvous, when set, makes each StartContainer wait until it has
	// been entered that many times at once.
	rendezvous *rendezvous
	// stopExit is what a stopped container exits with, by name; 143
	// (SIGTERM) if unset.
	stopExit map[string]int
}

// rendezvous lets n concurrent callers through together, and fails callers
// that wait longer than ten seconds: calls that never overlap.
type rendezvous struct {
	n       int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func newRendezvous(n int) *rendezvous { return &rendezvous{n: n, all: make(chan struct{})} }

func (r *rendezvous) wait() error {
	r.mu.Lock()
	r.arrived++
	if r.arrived == r.n {
		close(r.all)
	}
	r.mu.Unlock()
	select {
	case <-r.all:
		return nil
	case <-time.After(10 * time.Second):
		// Generous: on a loaded machine the other starts' goroutines
		// may be scheduled late; only starts that never overlap fail.
		return errors.New("the other starts never came while this one ran")
	}
}

func newFakeRuntime(clk *testclock.FakeClock, log *transcript) *fakeRuntime {
	return &fakeRuntime{
		clock:   clk,
		log:     log,
		events:  make(chan types.UID, 1000),
		pods:    make(map[types.UID]*PodState),
		errs:    make(map[string]error),
		blocked: make(map[types.UID]chan struct{}),
	}
}

func (r *fakeRuntime) ListPods(context.Context) ([]*PodState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	if err := r.listErr; err != nil {
		return nil, err
	}
	var out []*PodState
	for _, uid := range slices.Sorted(maps.Keys(r.pods)) {
		out = append(out, clonePodState(r.pods[uid]))
	}
	return out, nil
}

func (r *fakeRuntime) CreateSandbox(ctx context.Context, pod *corev1.Pod) (*PodState, error) {
	if err := r.enter(ctx, pod.UID, "create "+string(pod.UID)); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.pods[pod.UID]
	if !ok {
		s = &PodState{Pod: pod, Ready: true, NetNSPath: "/run/netns/" + string(pod.UID), CreatedAt: r.clock.Now()}
		r.pods[pod.UID] = s
	}
	return clonePodState(s), nil
}

func (r *fakeRuntime) StartContainer(ctx context.Context, req StartRequest) error {
	call := fmt.Sprintf("start %s/%s/%d", req.UID, req.Container, req.Attempt)
	if err := r.enter(ctx, req.UID, call); err != nil {
		return err
	}
	r.mu.Lock()
	rv := r.rendezvous
	r.mu.Unlock()
	if rv != nil {
		if err := rv.wait(); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errs["start "+string(req.UID)+"/"+req.Container]; err != nil {
		return err
	}
	s, ok := r.pods[req.UID]
	if !ok {
		return fmt.Errorf("start %s: no sandbox", req.UID)
	}
	if c := latestAttempt(s, req.Container); c != nil && c.Attempt >= req.Attempt {
		return fmt.Errorf("start %s: attempt %d already exists", call, req.Attempt)
	}
	s.Containers = append(s.Containers, ContainerState{
		Name:      req.Container,
		Attempt:   req.Attempt,
		ID:        fmt.Sprintf("peapod://%s/%s/%d", req.UID, req.Container, req.Attempt),
		Image:     "busybox",
		ImageID:   req.Image,
		Phase:     ContainerRunning,
		StartedAt: r.clock.Now(),
	})
	s.PodIPs = req.PodIPs
	return nil
}

// StopContainer ends a running container with its stopExit code.
func (r *fakeRuntime) StopContainer(ctx context.Context, uid types.UID, name string, grace time.Duration) error {
	if err := r.enter(ctx, uid, fmt.Sprintf("stop %s/%s %s", uid, name, grace)); err != nil {
		return err
	}
	r.mu.Lock()
	code, ok := r.stopExit[name]
	r.mu.Unlock()
	if !ok {
		code = 143
	}
	r.exit(uid, name, code)
	return nil
}

func (r *fakeRuntime) RemovePod(ctx context.Context, uid types.UID, grace time.Duration) error {
	if err := r.enter(ctx, uid, fmt.Sprintf("remove %s %s", uid, grace)); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, uid)
	return nil
}

func (r *fakeRuntime) Events() <-chan types.UID { return r.events }

// enter records a call, blocks while the pod is blocked and returns the
// error injected for the call.
func (r *fakeRuntime) enter(ctx context.Context, uid types.UID, call string) error {
	r.log.add("%s", call)
	r.mu.Lock()
	block := r.blocked[uid]
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	err := r.errs[call]
	r.mu.Unlock()
	if err == errPanic {
		panic("injected panic in " + call)
	}
	return err
}

// errPanic, injected with fail, makes the call panic.
var errPanic = errors.New("panic")

// block makes every call for uid block until the returned function runs.
func (r *fakeRuntime) block(uid types.UID) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.blocked[uid] = ch
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.blocked, uid)
		r.mu.Unlock()
		close(ch)
	}
}

// fail makes a call (as the transcript spells it, or "start uid/container"
// for every start of a container) return err until cleared with nil.
func (r *fakeRuntime) fail(call string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.errs, call)
		return
	}
	r.errs[call] = err
}

func (r *fakeRuntime) failList(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listErr = err
}

// add installs a pod as if an earlier agent had created it.
func (r *fakeRuntime) add(s *PodState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pods[s.UID()] = s
}

// exit ends the latest attempt of a running container and reports it.
func (r *fakeRuntime) exit(uid types.UID, name string, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.pods[uid]
	if !ok {
		return
	}
	c := latestAttempt(s, name)
	if c == nil || c.Phase != ContainerRunning {
		return
	}
	c.Phase, c.ExitCode, c.FinishedAt = ContainerExited, code, r.clock.Now()
	c.Reason = "Completed"
	if code != 0 {
		c.Reason = "Error"
	}
	r.events <- uid
}

// state returns, for every pod, its containers' latest attempt and phase,
// e.g. "web-1: web/2 Running".
func (r *fakeRuntime) state() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, uid := range slices.Sorted(maps.Keys(r.pods)) {
		s := r.pods[uid]
		line := string(uid) + ":"
		for _, c := range append(slices.Clone(s.Pod.Spec.InitContainers), s.Pod.Spec.Containers...) {
			if l := latestAttempt(s, c.Name); l != nil {
				line += fmt.Sprintf(" %s/%d %s", c.Name, l.Attempt, l.Phase)
			}
		}
		out = append(out, line)
	}
	return out
}

func latestAttempt(s *PodState, name string) *ContainerState {
	var latest *ContainerState
	for i := range s.Containers {
		if c := &s.Containers[i]; c.Name == name && (latest == nil || c.Attempt > latest.Attempt) {
			latest = c
		}
	}
	return latest
}

func clonePodState(s *PodState) *PodState {
	c := *s
	c.Containers = slices.Clone(s.Containers)
	c.PodIPs = slices.Clone(s.PodIPs)
	return &c
}

// fakeNetwork hands out one address per pod UID.
type fakeNetwork struct {
	log *transcript

	mu   sync.Mutex
	ips  map[types.UID]string
	next int
	err  error
}

func newFakeNetwork(log *transcript) *fakeNetwork {
	return &fakeNetwork{log: log, ips: make(map[types.UID]string)}
}

func (n *fakeNetwork) Setup(_ context.Context, pod *corev1.Pod, netnsPath string) ([]string, error) {
	n.log.add("setup %s %s", pod.UID, netnsPath)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil {
		return nil, n.err
	}
	ip, ok := n.ips[pod.UID]
	if !ok {
		n.next++
		ip = fmt.Sprintf("10.88.0.%d", n.next)
		n.ips[pod.UID] = ip
	}
	return []string{ip}, nil
}

func (n *fakeNetwork) Teardown(_ context.Context, pod *corev1.Pod) error {
	n.log.add("teardown %s", pod.UID)
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.ips, pod.UID)
	return nil
}

func (n *fakeNetwork) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.err = err
}
