package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/shim"
)

// shimTimeout bounds one status query to a shim. A shim that does not
// answer in time is taken for dead: its pod is reported not Ready.
const shimTimeout = 5 * time.Second

// ipsFile records the pod IPs the last StartContainer was given.
const ipsFile = "ips.json"

// keptAttempts is how many attempts per container keep their records.
const keptAttempts = 2

// ListPods implements reconcile.Runtime. A pod whose state cannot be read
// is left out and logged rather than failing the whole list.
func (r *Runtime) ListPods(ctx context.Context) ([]*reconcile.PodState, error) {
	entries, err := os.ReadDir(r.podsDir())
	if err != nil {
		return nil, err
	}
	var out []*reconcile.PodState
	seen := make(map[string]bool, len(entries))
	uids := make(map[types.UID]bool, len(entries))
	defer r.pods.prune(seen)
	defer r.states.prune(uids)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		seen[filepath.Join(r.podsDir(), e.Name())] = true
		uid := types.UID(e.Name())
		uids[uid] = true
		if st, ok := r.states.get(uid, time.Now()); ok {
			out = append(out, st)
			continue
		}
		gen, at := r.states.generation(uid), time.Now()
		st, err := r.podState(ctx, filepath.Join(r.podsDir(), e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			// CreateSandbox has not written pod.json yet.
			continue
		}
		if err != nil {
			r.log.Warn("read pod state", "uid", e.Name(), "err", err)
			continue
		}
		if st.Ready {
			// Adopts the shims of an earlier agent process.
			r.watch(st.UID())
		}
		r.states.put(uid, gen, at, st)
		out = append(out, st)
	}
	return out, nil
}

// podState reads one pod's state from its directory and its shim.
func (r *Runtime) podState(ctx context.Context, dir string) (*reconcile.PodState, error) {
	pod, fi, err := r.pods.read(dir)
	if err != nil {
		return nil, err
	}
	statuses, live := queryShim(ctx, dir)
	st := &reconcile.PodState{
		Pod:       pod,
		Ready:     live && pinned(dir, pod),
		PodIPs:    readIPs(dir),
		CreatedAt: fi.ModTime(),
	}
	if !pod.Spec.HostNetwork {
		st.NetNSPath = filepath.Join(dir, "ns", "net")
	}
	for _, c := range podContainers(pod) {
		states := containerStates(dir, pod.UID, c, live, statuses)
		r.addTerminationMessages(pod, c, states)
		st.Containers = append(st.Containers, states...)
	}
	return st, nil
}

// queryShim returns the shim's view of its containers, by name, and
// whether it answered.
func queryShim(ctx context.Context, dir string) (map[string]shim.Status, bool) {
	ctx, cancel := context.WithTimeout(ctx, shimTimeout)
	defer cancel()
	c := shim.NewClient(dir)
	defer c.Close()
	list, err := c.Containers(ctx)
	if err != nil {
		return nil, false
	}
	out := make(map[string]shim.Status, len(list))
	for _, s := range list {
		out[s.Name] = s
	}
	return out, true
}

// pinned reports whether the pod's namespace pins are in place.
func pinned(dir string, pod *corev1.Pod) bool {
	pins := []string{"ipc"}
	if !pod.Spec.HostNetwork {
		pins = append(pins, "net", "uts")
	}
	for _, p := range pins {
		var fs unix.Statfs_t
		if err := unix.Statfs(filepath.Join(dir, "ns", p), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
			return false
		}
	}
	return true
}

func podContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// containerStates returns the newest keptAttempts attempts of a container.
func containerStates(dir string, uid types.UID, c *corev1.Container, live bool, statuses map[string]shim.Status) []reconcile.ContainerState {
	var out []reconcile.ContainerState
	for _, a := range attempts(filepath.Join(shim.ContainersDir(dir), c.Name), -1) {
		if len(out) == keptAttempts {
			break
		}
		adir := shim.AttemptDir(dir, c.Name, a)
		rec, err := shim.ReadState(adir)
		if err != nil {
			// The start failed before the container ran.
			continue
		}
		cs := reconcile.ContainerState{
			Name: c.Name, Attempt: a, ID: containerID(uid, c.Name, a), Image: c.Image,
			ImageID: readImageRecord(adir).StatusID, StartedAt: rec.StartedAt,
		}
		exit, err := shim.ReadExit(adir)
		if err != nil {
			exit = unrecordedExit(rec, live, statuses[c.Name])
		}
		if exit == nil {
			cs.Phase, cs.PID = reconcile.ContainerRunning, rec.PID
		} else {
			setExit(&cs, exit)
		}
		out = append(out, cs)
	}
	return out
}

// unrecordedExit decides the fate of an attempt without an exit record:
// running if its shim says so, else dead with its shim (containers die
// with their shim, by Pdeathsig). When it died is unknown; FinishedAt is
// its start, which at least stays the same from one list to the next.
func unrecordedExit(rec *shim.State, live bool, s shim.Status) *shim.Exit {
	switch {
	case live && s.Attempt == rec.Attempt && s.Exit == nil && s.PID == rec.PID:
		return nil
	case live && s.Attempt == rec.Attempt && s.Exit != nil:
		// The shim failed to write the record but knows the exit.
		return s.Exit
	}
	msg := "shim died"
	if live {
		msg = "shim lost track of the container"
	}
	return &shim.Exit{
		Name: rec.Name, Attempt: rec.Attempt, ExitCode: 128 + int(unix.SIGKILL), Signal: int(unix.SIGKILL),
		FinishedAt: rec.StartedAt, Message: msg,
	}
}

func setExit(cs *reconcile.ContainerState, e *shim.Exit) {
	cs.Phase = reconcile.ContainerExited
	cs.FinishedAt, cs.ExitCode, cs.Signal, cs.Message = e.FinishedAt, e.ExitCode, e.Signal, e.Message
	switch {
	case e.OOMKilled:
		cs.Reason = "OOMKilled"
	case e.ExitCode == 0:
		cs.Reason = "Completed"
	default:
		cs.Reason = "Error"
	}
}

// attempts returns up to n (all if n < 0) attempt numbers recorded under
// dir, newest first.
func attempts(dir string, n int) []int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		if a, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func readIPs(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, ipsFile))
	if err != nil {
		return nil
	}
	var ips []string
	if json.Unmarshal(b, &ips) != nil {
		return nil
	}
	return ips
}

// podCache keeps the decoded pod.json of each pod directory. The file is
// written once, by CreateSandbox, and decoding a corev1.Pod was the largest
// cost of listing pods, which the controller does every resync. An entry
// is used only while the file is the one it was decoded from. The pods are
// shared: callers must not modify them. The zero value is ready to use.
type podCache struct {
	mu      sync.Mutex
	entries map[string]cachedPod
}

type cachedPod struct {
	ino, size int64
	mtime     time.Time
	pod       *corev1.Pod
}

// read returns the pod of dir and the FileInfo of its pod.json.
func (c *podCache) read(dir string) (*corev1.Pod, os.FileInfo, error) {
	fi, err := os.Stat(filepath.Join(dir, shim.PodFile))
	if err != nil {
		return nil, nil, err
	}
	ino := int64(fi.Sys().(*syscall.Stat_t).Ino)
	c.mu.Lock()
	e, ok := c.entries[dir]
	c.mu.Unlock()
	if ok && e.ino == ino && e.size == fi.Size() && e.mtime.Equal(fi.ModTime()) {
		return e.pod, fi, nil
	}
	pod, err := readPod(dir)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cachedPod{}
	}
	c.entries[dir] = cachedPod{ino: ino, size: fi.Size(), mtime: fi.ModTime(), pod: pod}
	c.mu.Unlock()
	return pod, fi, nil
}

// prune drops the entries of directories not in keep.
func (c *podCache) prune(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for dir := range c.entries {
		if !keep[dir] {
			delete(c.entries, dir)
		}
	}
}
