package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/container"
)

// PodFile is the pod object (a corev1.Pod as JSON) in the pod's state
// directory, written by the runtime before it starts the shim. The shim
// itself never decodes it: what it needs of the pod comes with each start.
const PodFile = "pod.json"

// ContainerSpec is the StartRequest.Spec that the shim started by Main
// understands.
type ContainerSpec struct {
	// Name is the container's name in the pod.
	Name string `json:"name"`
	// Container is the container to start. The shim sets its Stdout,
	// Stderr and Cgroup; they must be nil here.
	Container container.Spec `json:"container"`
	// Cgroups, when set, places the container in its cgroup under
	// <Parent>/pod<PodUID>/<Name>, which the runtime created with the pod's
	// limits; nil leaves it in the shim's cgroups.
	Cgroups *CgroupConfig `json:"cgroups,omitempty"`
}

// CgroupConfig is what the shim needs to make a container's cgroup.
type CgroupConfig struct {
	Root   string    `json:"root,omitempty"`
	Parent string    `json:"parent,omitempty"`
	PodUID types.UID `json:"podUID"`
	// Resources are the container's; the pod's are on the pod cgroup
	// already.
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// containerLauncher starts containers with the container package.
type containerLauncher struct {
	dir string
	log *slog.Logger

	mu sync.Mutex
	// managers holds the cgroup manager of each configuration seen: one
	// per shim in practice, built on the first start.
	managers map[cgroupKey]*cgroups.Manager
}

type cgroupKey struct{ root, parent string }

func newContainerLauncher(dir string, log *slog.Logger) *containerLauncher {
	return &containerLauncher{dir: dir, log: log, managers: map[cgroupKey]*cgroups.Manager{}}
}

func (l *containerLauncher) Launch(ctx context.Context, raw json.RawMessage, stdout, stderr *os.File) (*Launched, error) {
	var cs ContainerSpec
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("decode container spec: %w", err)
	}
	spec := cs.Container
	spec.Stdout, spec.Stderr = stdout, stderr
	var cg *cgroups.Container
	if cs.Cgroups != nil {
		var err error
		if cg, err = l.cgroup(cs.Name, cs.Cgroups); err != nil {
			return nil, err
		}
		spec.Cgroup = cg
	}
	oom, err := oomCheck(cg)
	if err != nil {
		cg.Close()
		return nil, err
	}
	p, err := container.Start(ctx, &spec)
	if err != nil {
		if cg != nil {
			cg.Close()
		}
		return nil, err
	}
	l.log.Info("container started", "container", cs.Name, "pid", p.Pid)
	// Opened while the init is our unreaped child: it names this process.
	pidfd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		l.log.Warn("open pidfd of container; exec will not work", "container", cs.Name, "err", err)
		pidfd = -1
	}
	ex := &execer{spec: &spec, target: container.ExecTarget{PID: p.Pid, PIDFD: pidfd}, cg: cg}
	return &Launched{PID: p.Pid, Process: p, OOMKilled: oom, Release: ex.release, Exec: ex.exec}, nil
}

// execer runs execs in one container attempt while it runs.
type execer struct {
	spec *container.Spec

	// mu is read-held by an exec starting, so that release cannot close
	// the descriptors it uses.
	mu     sync.RWMutex
	target container.ExecTarget
	cg     *cgroups.Container
	// released is set once the container exited.
	released bool
}

func (e *execer) exec(ctx context.Context, opts *container.ExecOptions) (*container.ExecProcess, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.released || e.target.PIDFD < 0 {
		return nil, errors.New("the container has exited")
	}
	if e.cg != nil {
		opts.Cgroup = e.cg
	}
	return container.Exec(ctx, e.spec, e.target, opts)
}

// release closes the container's cgroup descriptor once it has exited.
func (e *execer) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.released = true
	if e.target.PIDFD >= 0 {
		unix.Close(e.target.PIDFD)
	}
	if e.cg != nil {
		e.cg.Close()
	}
}

// cgroup creates (or reopens) the container's cgroup with its limits, in
// the pod cgroup the runtime made.
func (l *containerLauncher) cgroup(name string, cfg *CgroupConfig) (*cgroups.Container, error) {
	m, err := l.manager(cfg)
	if err != nil {
		return nil, err
	}
	pod := m.Lookup(cfg.PodUID)
	if pod == nil {
		return nil, fmt.Errorf("pod UID %q is not usable as a cgroup name", cfg.PodUID)
	}
	return pod.Container(name, &corev1.Container{Resources: cfg.Resources})
}

// manager returns the cgroup manager for cfg, building it the first time:
// it detects the hierarchies from the mount table.
func (l *containerLauncher) manager(cfg *CgroupConfig) (*cgroups.Manager, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := cgroupKey{cfg.Root, cfg.Parent}
	if m := l.managers[key]; m != nil {
		return m, nil
	}
	m, err := cgroups.New(cgroups.Options{Root: cfg.Root, Parent: cfg.Parent, Log: l.log})
	if err != nil {
		return nil, err
	}
	l.managers[key] = m
	return m, nil
}

// oomCheck returns a function that reports whether the cgroup's OOM kill
// counter grew after this call. The counter lives as long as the cgroup,
// which outlives attempts, hence the baseline.
func oomCheck(cg *cgroups.Container) (func() (bool, error), error) {
	if cg == nil {
		return nil, nil
	}
	before, err := cg.OOMKills()
	if err != nil {
		return nil, err
	}
	return func() (bool, error) {
		after, err := cg.OOMKills()
		return after > before, err
	}, nil
}
