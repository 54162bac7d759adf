// Package runtime runs pod sandboxes and their containers on Linux: it
// implements reconcile.Runtime on top of the sandbox, userns, cgroups,
// container and shim packages. Every pod has a shim process that outlives
// the agent; a Runtime built by a restarted agent finds the pods and shims
// of the previous one from the state directory.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/seccomp"
	"github.com/peapod/peapod/runtime/shim"
	"github.com/peapod/peapod/runtime/userns"
)

var _ reconcile.Runtime = (*Runtime)(nil)

// eventBuffer is how many pod-changed hints wait for the controller before
// further ones are dropped (it resyncs anyway).
const eventBuffer = 256

// Options configures a Runtime.
type Options struct {
	// StateDir holds pod state that must vanish at reboot (a tmpfs such as
	// /run/peapod): namespace pins, shim sockets, exit records.
	StateDir string
	// RootDir holds pod data on disk (/var/lib/peapod): overlay upper
	// dirs and emptyDirs.
	RootDir string
	// LogDir is kubelet's /var/log/pods.
	LogDir string
	// UsernsRange is where pods' host ID ranges come from.
	UsernsRange userns.Range
	// Cgroups, when set, gives every pod and container a cgroup with its
	// limits; nil runs them in the shim's cgroup.
	Cgroups *cgroups.Options
	// ResolvConf returns a pod's /etc/resolv.conf; nil means the host's
	// with loopback nameservers dropped.
	ResolvConf func(*corev1.Pod) []byte
	// Images gives containers their images; nil means Images{} (rootfs:
	// images only).
	Images ImageSource
	// LogMaxSize and LogMaxFiles bound each container's log files, as
	// kubelet's containerLogMaxSize and containerLogMaxFiles; zero means
	// logs.DefaultMaxSize and logs.DefaultMaxFiles.
	LogMaxSize  int64
	LogMaxFiles int
	// Log receives state transitions and errors; nil discards them.
	Log *slog.Logger
	// Exe is the peapod binary re-executed as the shim; "" means
	// /proc/self/exe.
	Exe string
	// NoSpareShim turns the spare shim off. By default the Runtime keeps
	// one shim started ahead of the next CreateSandbox, which binds it to
	// its pod instead of starting a shim, and then starts the next spare.
	NoSpareShim bool
	// NoSeccompDefault runs containers that name no seccomp profile
	// Unconfined, as kubelet without --seccomp-default. By default they
	// get RuntimeDefault.
	NoSeccompDefault bool
}

// Runtime implements reconcile.Runtime. Its methods are safe for concurrent
// use, for different pods at once. Close stops its goroutines and its
// spare shim; the pods and their shims keep running.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	ids     *userns.Allocator
	cgroups *cgroups.Manager
	events  chan types.UID
	// spares, unless nil, keeps a spare shim ready.
	spares *sparePool
	// ctx ends the watchers and the spare pool at Close; goroutines
	// counts them.
	ctx        context.Context
	cancel     context.CancelFunc
	goroutines sync.WaitGroup

	podLocks podLocks
	pods     podCache
	states   stateCache
	seccomp  seccomp.Cache

	mu sync.Mutex
	// watching holds the watcher of each pod whose shim is followed.
	watching map[types.UID]*watcher
}

// watcher follows one shim's events.
type watcher struct{ cancel context.CancelFunc }

// New opens the state under opts' directories and collects what a reboot
// or a crash left behind: pod data on disk with no pod state, user-ID
// ranges and cgroups of pods that are gone.
func New(opts Options) (*Runtime, error) {
	if opts.StateDir == "" || opts.RootDir == "" || opts.LogDir == "" {
		return nil, errors.New("runtime: StateDir, RootDir and LogDir are required")
	}
	if opts.Exe == "" {
		// Shims run from one sealed in-memory copy of this binary: they
		// need not copy it again for their containers' init stages, its
		// pages are shared by all of them, and replacing the binary on
		// disk never changes what a running shim executes. The path is
		// resolved by the child between fork and exec, while it still
		// holds our descriptor.
		exe, err := container.SealedExe()
		if err != nil {
			return nil, err
		}
		opts.Exe = fmt.Sprintf("/proc/self/fd/%d", exe.Fd())
	}
	if opts.Images == nil {
		opts.Images = Images{}
	}
	if opts.ResolvConf == nil {
		opts.ResolvConf = hostResolvConf
	}
	r := &Runtime{opts: opts, log: opts.Log, events: make(chan types.UID, eventBuffer), watching: map[types.UID]*watcher{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{r.podsDir(), filepath.Join(opts.RootDir, "pods"), opts.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create runtime directory: %w", err)
		}
	}
	var err error
	if r.ids, err = userns.New(opts.StateDir, opts.UsernsRange); err != nil {
		return nil, err
	}
	if opts.Cgroups != nil {
		co := *opts.Cgroups
		co.Log = r.log
		if r.cgroups, err = cgroups.New(co); err != nil {
			return nil, err
		}
	}
	if err := r.collectGarbage(); err != nil {
		// Leftovers cost space, not correctness: keep going.
		r.log.Warn("collect leftovers of earlier runs", "err", err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if !opts.NoSpareShim {
		r.spares = newSparePool(opts.Exe, r.podsDir(), r.log)
		r.goroutines.Go(func() { r.spares.run(r.ctx) })
	}
	return r, nil
}

// Close stops watching the shims, drops the spare shim and waits for its
// goroutines to end. The pods keep running; a new Runtime adopts them.
func (r *Runtime) Close() error {
	r.cancel()
	r.goroutines.Wait()
	return nil
}

// Events implements reconcile.Runtime.
func (r *Runtime) Events() <-chan types.UID { return r.events }

func (r *Runtime) notify(uid types.UID) {
	select {
	case r.events <- uid:
	default:
	}
}

func (r *Runtime) podsDir() string { return filepath.Join(r.opts.StateDir, "pods") }

func (r *Runtime) podDir(uid types.UID) string { return filepath.Join(r.podsDir(), string(uid)) }

func (r *Runtime) podRoot(uid types.UID) string {
	return filepath.Join(r.opts.RootDir, "pods", string(uid))
}

// watch makes sure one goroutine follows the events of the pod's shim,
// turning each exit, and the end of the stream (the shim exited), into a
// hint on Events. The watcher ends there, at unwatch or at Close.
func (r *Runtime) watch(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.watching[uid]; ok || r.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	w := &watcher{cancel: cancel}
	r.watching[uid] = w
	r.goroutines.Go(func() {
		defer cancel()
		c := shim.NewClient(r.podDir(uid))
		defer c.Close()
		err := c.Events(ctx, func() { r.states.setConnected(uid, true) }, func(shim.Event) {
			r.states.bump(uid)
			r.notify(uid)
		})
		r.states.setConnected(uid, false)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.log.Warn("pod shim went away", "uid", uid, "err", err)
		} else {
			r.log.Debug("pod shim exited", "uid", uid)
		}
		r.mu.Lock()
		if r.watching[uid] == w {
			delete(r.watching, uid)
		}
		r.mu.Unlock()
		r.notify(uid)
	})
}

// unwatch stops the pod's watcher, if any.
func (r *Runtime) unwatch(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.watching[uid]; ok {
		w.cancel()
		delete(r.watching, uid)
		r.states.setConnected(uid, false)
	}
}

// NetNSPath returns the pinned network namespace of the pod's sandbox, or
// "" for a hostNetwork pod. The path may not exist yet, or any more.
func (r *Runtime) NetNSPath(pod *corev1.Pod) string {
	return sandbox.Layout(r.podDir(pod.UID), pod.Spec.HostNetwork).NetNS
}
