package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// podBackoffKey is the back-off key of a worker's pod-level failures.
const podBackoffKey = ""

// input is the latest state of a key that the main loop hands its worker.
type input struct {
	// desired is nil when the key is not in the snapshot.
	desired   *corev1.Pod
	firstSeen time.Time
	// keep is set when desired is nil but the manifest file of an observed
	// pod is in error: that pod keeps running.
	keep     bool
	observed []*PodState
	seq      uint64
}

// worker drives the pods of one key. Its goroutine, started by
// Controller.deliver and stopped by ctx or by retiring, is the only one to
// call the Runtime and Network for the key's pods.
type worker struct {
	c    *Controller
	key  string
	log  *slog.Logger
	poke chan struct{}

	mu     sync.Mutex
	in     input
	status []*corev1.Pod
	// cancelPull cancels the pulls of the sync in progress, which drives
	// towards pullUID; nil between syncs.
	cancelPull context.CancelFunc
	pullUID    types.UID
	// changed is closed, and replaced, when the desired pod changes.
	changed chan struct{}

	// Owned by the worker goroutine.
	views   map[types.UID]*podView
	gone    map[types.UID]uint64
	backoff *backoff
	// target is the pod the last sync drove towards.
	target *corev1.Pod
	// problem is the last pod-level failure while driving towards target,
	// retryAt when to try again.
	problem *podProblem
	retryAt time.Time
	timer   clock.Timer
	// evicted is the eviction of target, if it was evicted.
	evicted *eviction
	// advanced holds the back-off keys grown by the current sync's
	// starts (see advance).
	advanced map[string]bool
	// probes runs the probes of the key's containers.
	probes *prober
}

func newWorker(c *Controller, key string) *worker {
	w := &worker{
		c:       c,
		key:     key,
		log:     c.log.With("pod", key),
		poke:    make(chan struct{}, 1),
		views:   make(map[types.UID]*podView),
		gone:    make(map[types.UID]uint64),
		backoff: newBackoff(),
		changed: make(chan struct{}),
	}
	w.probes = newProber(c, w.log, func() { poke(w.poke) })
	return w
}

// set stores the latest input and reports whether the desired pod changed.
// It cancels the pulls in progress for a pod that is no longer wanted.
func (w *worker) set(in input) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := uidOf(w.in.desired) != uidOf(in.desired) || w.in.keep != in.keep
	w.in = in
	if w.cancelPull != nil && !in.wants(w.pullUID) {
		w.cancelPull()
	}
	if changed {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	return changed
}

// wants reports whether the input still asks for pod uid to run: it is
// the desired pod, or the manifest is in error and the pod kept.
func (in input) wants(uid types.UID) bool {
	if in.desired == nil {
		return in.keep
	}
	return in.desired.UID == uid
}

func (w *worker) input() input {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.in
}

func (w *worker) desired() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.in.desired
}

// pods returns deep copies of the worker's published pods.
func (w *worker) pods() []corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]corev1.Pod, 0, len(w.status))
	for _, p := range w.status {
		out = append(out, *p.DeepCopy())
	}
	return out
}

func (w *worker) run(ctx context.Context) {
	defer w.stopTimer()
	defer w.probes.close()
	for {
		var timerC <-chan time.Time
		if w.timer != nil {
			timerC = w.timer.C()
		}
		select {
		case <-ctx.Done():
			return
		case <-w.poke:
		case <-timerC:
		}
		retryAt := w.syncSafely(ctx)
		if ctx.Err() != nil {
			return
		}
		// A worker that removed a sandbox stays until a list confirms it
		// gone: the main loop's last observation may still show it, and a
		// new worker for the key (the file restored with the same content)
		// would have no gone entry to discard it and would adopt a sandbox
		// that no longer exists.
		if w.target == nil && len(w.views) == 0 && len(w.gone) == 0 && retryAt.IsZero() && w.c.retire(w) {
			w.c.synced(w.key)
			w.c.hook()
			return
		}
		w.arm(retryAt)
		w.publish()
		// After publish: a client told the agent is ready sees the pod.
		w.c.synced(w.key)
	}
}

// syncSafely runs one sync; a panic is logged, counted and retried with
// back-off instead of taking the agent down.
func (w *worker) syncSafely(ctx context.Context) (retryAt time.Time) {
	start := time.Now()
	defer func() {
		w.c.metrics.observeSync(time.Since(start))
		if r := recover(); r != nil {
			w.log.Error("pod worker panicked", "panic", r, "stack", string(debug.Stack()))
			w.c.metrics.panicked()
			retryAt = w.fail(ctx, &podProblem{reason: "InternalError", err: fmt.Errorf("worker panicked: %v", r)})
		}
	}()
	return w.sync(ctx)
}

// sync moves the key's pods one step towards its input: it tears down every
// sandbox that is not the target pod, then creates the target's sandbox and
// network, then starts its containers. It returns when to sync again if
// nothing else happens first (zero: never).
func (w *worker) sync(ctx context.Context) time.Time {
	in := w.input()
	w.observe(in.observed, in.seq)
	target := targetPod(in.desired, in.keep, w.views)
	w.target = target
	if target != nil && w.published(target.UID) == nil {
		w.publish()
	}
	if w.backingOff() {
		return w.retryAt
	}
	for _, v := range stale(target, w.views) {
		if err := w.remove(ctx, v); err != nil {
			return w.fail(ctx, err)
		}
	}
	if w.evictedTarget(target) != nil {
		return w.stayEvicted(ctx, target)
	}
	if target == nil {
		w.succeeded()
		return time.Time{}
	}
	v, err := w.ensureSandbox(ctx, target)
	if err == nil {
		err = w.ensureNetwork(ctx, v)
	}
	if err != nil {
		return w.fail(ctx, err)
	}
	w.succeeded()
	retryAt := w.startContainers(ctx, v)
	w.applyProbes(ctx, v)
	w.stopSidecars(ctx, v)
	w.recordStart(v, in.firstSeen)
	return w.checkDisk(ctx, v, retryAt)
}

// observe merges the runtime's observation into the views. A list that
// started before the worker last changed a sandbox may predate the change,
// so it can neither bring back a removed sandbox nor report a new one gone.
func (w *worker) observe(observed []*PodState, seq uint64) {
	listed := make(map[types.UID]bool, len(observed))
	for _, s := range observed {
		uid := s.UID()
		listed[uid] = true
		if removedAt, ok := w.gone[uid]; ok && seq <= removedAt {
			continue
		}
		delete(w.gone, uid)
		if v := w.views[uid]; v != nil {
			v.update(s)
		} else {
			w.views[uid] = newPodView(s)
		}
	}
	for uid, v := range w.views {
		if !listed[uid] && seq > v.touched {
			delete(w.views, uid)
		}
	}
	for uid, removedAt := range w.gone {
		if !listed[uid] && seq > removedAt {
			delete(w.gone, uid)
		}
	}
}

// remove tears down a sandbox: its containers get the grace period of the
// pod they were started from. The network goes last, so that an address is
// never handed out again while the old pod may still use it.
func (w *worker) remove(ctx context.Context, v *podView) error {
	uid := v.pod.UID
	if v.deletingFrom.IsZero() {
		v.deletingFrom = w.c.clock.Now()
		w.publish()
	}
	grace := gracePeriod(v.pod)
	if w.evictionOf(uid) != nil {
		// Kubelet evicts with no grace period, which its floor raises.
		grace = minGrace
	}
	w.log.Info("removing pod", "uid", uid, "grace", grace)
	w.probes.forget(uid)
	if needsOrderedStop(v.pod) {
		grace = w.stopContainers(ctx, v, grace)
	}
	if err := w.c.rt.RemovePod(ctx, uid, grace); err != nil {
		return &podProblem{reason: "RemovePodError", err: fmt.Errorf("remove pod %s: %w", uid, err)}
	}
	if w.c.net != nil && !v.pod.Spec.HostNetwork {
		if err := w.c.net.Teardown(ctx, v.pod); err != nil {
			return &podProblem{reason: "NetworkTeardownError", err: fmt.Errorf("tear down network of pod %s: %w", uid, err)}
		}
	}
	delete(w.views, uid)
	w.gone[uid] = w.c.listSeq.Load()
	// A fresh list clears the gone entry, and with it lets the worker retire.
	w.c.requestRelist(w.key)
	for name := range v.containers {
		w.backoff.forget(backoffKey(uid, name))
	}
	for _, c := range v.pod.Spec.Containers {
		w.backoff.forget(imageBackoffKey(uid, c.Image))
	}
	w.log.Info("removed pod", "uid", uid)
	return nil
}

// ensureSandbox returns the ready sandbox of pod, creating it if needed.
func (w *worker) ensureSandbox(ctx context.Context, pod *corev1.Pod) (*podView, error) {
	v := w.views[pod.UID]
	if v != nil && v.ready {
		return v, nil
	}
	w.log.Info("creating sandbox", "uid", pod.UID)
	s, err := w.c.rt.CreateSandbox(ctx, pod)
	if err != nil {
		return nil, &podProblem{reason: "SandboxCreateError", err: fmt.Errorf("create sandbox: %w", err)}
	}
	if v == nil {
		v = newPodView(s)
		v.createdHere = true
		w.views[pod.UID] = v
	} else {
		v.update(s)
	}
	v.touched = w.c.listSeq.Load()
	delete(w.gone, pod.UID)
	if !v.ready {
		return nil, &podProblem{reason: "SandboxCreateError", err: errors.New("sandbox is not ready")}
	}
	return v, nil
}

// ensureNetwork connects the sandbox once per agent process: Setup is
// idempotent, and after an agent restart it returns the addresses the pod
// already has.
func (w *worker) ensureNetwork(ctx context.Context, v *podView) error {
	if w.c.net == nil || v.pod.Spec.HostNetwork || v.networked {
		return nil
	}
	ips, err := w.c.net.Setup(ctx, v.pod, v.netnsPath)
	if err != nil {
		return &podProblem{reason: "NetworkSetupError", err: fmt.Errorf("set up pod network: %w", err)}
	}
	v.ips, v.networked = ips, true
	return nil
}

// startContainers starts every container that policy and back-off allow,
// and returns when the earliest one backing off may start. The starts run
// concurrently (Runtime allows it for different containers of a pod): a
// pod is ready when its slowest container is, not when the sum of them
// is. Decisions and their bookkeeping stay on the worker goroutine.
func (w *worker) startContainers(ctx context.Context, v *podView) time.Time {
	var retryAt time.Time
	var starts []*pendingStart
	w.advanced = make(map[string]bool)
	// Every decision is taken before any back-off grows: containers
	// sharing an image share its back-off.
	startable := w.startable(v)
	decisions := make([]decision, len(startable))
	for i, c := range startable {
		cv := v.container(c.Name)
		pullBackOff(cv.failure, c.Image)
		decisions[i] = decide(v.pod, c.Name, cv, w.backoff, w.c.clock.Now())
		retryAt = earliest(retryAt, decisions[i].retryAt)
	}
	for i, c := range startable {
		if decisions[i].start {
			starts = append(starts, w.prepareStart(v, c, v.container(c.Name), decisions[i]))
		}
	}
	pullCtx, cancel := w.pullContext(ctx, v.pod.UID)
	defer cancel()
	w.runStarts(ctx, pullCtx, v, starts)
	for _, s := range starts {
		retryAt = earliest(retryAt, w.finishStart(ctx, v, s))
	}
	return retryAt
}

// pendingStart is one container attempt being started.
type pendingStart struct {
	c   corev1.Container
	cv  *containerView
	d   decision
	key string
	at  time.Time
	req StartRequest
	err error
	// pulling tells that err comes from Images.EnsureImage; cancelled,
	// that the pull was cancelled because the pod is no longer wanted.
	pulling, cancelled bool
}

// prepareStart advances the container's back-off for a retry and builds its
// start request.
func (w *worker) prepareStart(v *podView, c corev1.Container, cv *containerView, d decision) *pendingStart {
	now := w.c.clock.Now()
	key := backoffKey(v.pod.UID, c.Name)
	if !d.failedAt.IsZero() {
		w.advance(d.backoffKey, d.failedAt, now)
	}
	return &pendingStart{
		c: c, cv: cv, d: d, key: key, at: now,
		req: StartRequest{UID: v.pod.UID, Container: c.Name, Attempt: d.attempt, PodIPs: v.ips},
	}
}

// runStarts runs every start, concurrently, and returns when all have
// returned. A panic in one is raised again here, on the worker goroutine,
// once the others are done, so that syncSafely handles it as any other.
func (w *worker) runStarts(ctx, pullCtx context.Context, v *podView, starts []*pendingStart) {
	if len(starts) == 1 {
		w.start(ctx, pullCtx, v, starts[0])
		return
	}
	panics := make([]any, len(starts))
	var wg sync.WaitGroup
	for i, s := range starts {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			w.start(ctx, pullCtx, v, s)
		})
	}
	wg.Wait()
	for _, p := range panics {
		if p != nil {
			panic(p)
		}
	}
}

// pullContext returns the context of the pulls of a sync towards pod uid:
// set (the main loop handing the worker a new desired pod) cancels it
// once uid is no longer the pod to run, so a pull in progress never
// outlives the pod that asked for it.
func (w *worker) pullContext(ctx context.Context, uid types.UID) (context.Context, context.CancelFunc) {
	pullCtx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pullUID, w.cancelPull = uid, cancel
	if !w.in.wants(uid) {
		cancel()
	}
	return pullCtx, func() {
		w.mu.Lock()
		w.cancelPull = nil
		w.mu.Unlock()
		cancel()
	}
}

// finishStart records the outcome of one start and returns when to retry
// if it failed.
func (w *worker) finishStart(ctx context.Context, v *podView, s *pendingStart) time.Time {
	if s.err != nil {
		if ctx.Err() != nil || s.cancelled {
			return time.Time{}
		}
		key := s.key
		if s.pulling {
			key = imageBackoffKey(v.pod.UID, s.c.Image)
		}
		return w.startFailed(s.c.Name, s.cv, key, s.d, s.err, s.at)
	}
	s.cv.failure = nil
	s.cv.record(ContainerState{Name: s.c.Name, Attempt: s.d.attempt, Image: s.c.Image, Phase: ContainerRunning, StartedAt: s.at}, false)
	v.touched = w.c.listSeq.Load()
	w.log.Info("started container", "container", s.c.Name, "attempt", s.d.attempt)
	w.c.requestRelist(w.key)
	return time.Time{}
}

// startFailed records a failed start, shown as the container's Waiting
// reason, and returns when to retry.
func (w *worker) startFailed(name string, cv *containerView, key string, d decision, err error, now time.Time) time.Time {
	failure := &startFailure{at: now, reason: "RunContainerError", message: err.Error(), backoffKey: key}
	var se *StartError
	if errors.As(err, &se) {
		failure.reason, failure.message = se.Reason, se.Err.Error()
	}
	if d.failedAt.IsZero() || d.backoffKey != key {
		// The first failure counted against this back-off.
		w.advance(key, now, now)
	}
	cv.failure = failure
	w.log.Error("start container", "container", name, "attempt", d.attempt, "err", err)
	w.c.metrics.syncError(failure.reason)
	return w.backoff.retryAt(key, now)
}

// advance grows key's back-off, once per sync: a pod's containers of the
// same image share its pull back-off, and their pulls of it in one sync
// are one failure, as kubelet counts them.
func (w *worker) advance(key string, failedAt, now time.Time) {
	if w.advanced[key] {
		return
	}
	w.advanced[key] = true
	w.backoff.next(key, failedAt, now)
}

// recordStart observes the pod's start latency the first time all the
// containers of a sandbox this worker created run.
func (w *worker) recordStart(v *podView, firstSeen time.Time) {
	if !v.createdHere || v.startTimed || firstSeen.IsZero() {
		return
	}
	for _, c := range v.pod.Spec.Containers {
		if cv := v.containers[c.Name]; cv == nil || cv.latest == nil || cv.latest.Phase != ContainerRunning {
			return
		}
	}
	v.startTimed = true
	w.c.metrics.podStarted(w.c.clock.Since(firstSeen))
}

// backingOff reports whether the last sync failed for the same target and
// its back-off has not expired: pokes then only refresh the status, so a
// failing pod is never retried in a hot loop.
func (w *worker) backingOff() bool {
	return w.problem != nil && w.problem.target == uidOf(w.target) && w.c.clock.Now().Before(w.retryAt)
}

// fail records a pod-level failure and returns when to retry. Failures
// caused by the agent shutting down are not the pod's.
func (w *worker) fail(ctx context.Context, err error) time.Time {
	if ctx.Err() != nil {
		return time.Time{}
	}
	var p *podProblem
	if !errors.As(err, &p) {
		p = &podProblem{reason: "SyncError", err: err}
	}
	p.target = uidOf(w.target)
	w.problem = p
	now := w.c.clock.Now()
	w.backoff.next(podBackoffKey, now, now)
	w.retryAt = w.backoff.retryAt(podBackoffKey, now)
	w.log.Error("sync pod", "reason", p.reason, "err", p.err, "retry", w.backoff.delay(podBackoffKey))
	w.c.metrics.syncError(p.reason)
	return w.retryAt
}

func (w *worker) succeeded() {
	w.problem, w.retryAt = nil, time.Time{}
	w.backoff.forget(podBackoffKey)
}

// publish computes the status of every pod of the key: the ones being torn
// down, then the target.
func (w *worker) publish() {
	now, target := w.c.clock.Now(), w.target
	var pods []*corev1.Pod
	for _, v := range sortedViews(w.views) {
		if target == nil || v.pod.UID != target.UID {
			pods = append(pods, w.podObject(v.pod, v, nil, now))
		}
	}
	if target != nil {
		pods = append(pods, w.podObject(target, w.views[target.UID], w.problem, now))
	}
	w.mu.Lock()
	w.status = pods
	w.mu.Unlock()
	w.c.hook()
}

func (w *worker) podObject(pod *corev1.Pod, v *podView, problem *podProblem, now time.Time) *corev1.Pod {
	p := pod.DeepCopy()
	evicted := w.evictionOf(pod.UID)
	p.Status = podStatus(statusInput{pod: pod, view: v, backoff: w.backoff, problem: problem, prev: w.published(pod.UID), now: now, evicted: evicted, probes: w.probes})
	w.reportNetwork(p, v)
	w.c.node.describe(p)
	if v != nil && !v.deletingFrom.IsZero() && evicted == nil {
		grace := int64(gracePeriod(pod) / time.Second)
		p.DeletionTimestamp = &metav1.Time{Time: v.deletingFrom}
		p.DeletionGracePeriodSeconds = &grace
	}
	return p
}

// published returns the status last published for uid. Only the worker
// goroutine writes w.status, so it reads it without the lock.
func (w *worker) published(uid types.UID) *corev1.PodStatus {
	for _, p := range w.status {
		if p.UID == uid {
			return &p.Status
		}
	}
	return nil
}

// arm sets the worker's timer to fire at retryAt, or stops it. A retryAt
// that passed while the sync ran pokes the worker at once.
func (w *worker) arm(retryAt time.Time) {
	w.stopTimer()
	if retryAt.IsZero() {
		return
	}
	if d := retryAt.Sub(w.c.clock.Now()); d > 0 {
		w.timer = w.c.clock.NewTimer(d)
		return
	}
	poke(w.poke)
}

func (w *worker) stopTimer() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	default:
		return b
	}
}

func uidOf(p *corev1.Pod) types.UID {
	if p == nil {
		return ""
	}
	return p.UID
}
