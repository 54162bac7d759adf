package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pod is a pod's cgroup. It holds no open files.
type Pod struct {
	m   *Manager
	rel string
	g   group
}

// Pod creates the cgroup of the pod with the given UID, or reopens it, and
// sets the pod-level limits computed from pod: the sum of its containers'
// memory and CPU limits when every container declares one, CPU shares from
// the sum of requests, and Options.PodPidsLimit. pod must not be nil.
func (m *Manager) Pod(uid types.UID, pod *corev1.Pod) (*Pod, error) {
	if err := checkName(string(uid)); err != nil {
		return nil, fmt.Errorf("pod UID %q: %w", uid, err)
	}
	p := m.pod(uid)
	if err := m.backend.setup(p.rel); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", p.Path(), err)
	}
	if err := p.g.set(podLimits(pod, m.pidsLimit)); err != nil {
		return nil, fmt.Errorf("set limits on cgroup %s: %w", p.Path(), err)
	}
	return p, nil
}

// Lookup returns a handle on the cgroup of the pod with the given UID
// without creating it or touching its limits, for reading: its methods
// report fs.ErrNotExist when the pod has no cgroup.
func (m *Manager) Lookup(uid types.UID) *Pod {
	if checkName(string(uid)) != nil {
		return nil
	}
	return m.pod(uid)
}

// pod returns a handle on the pod's cgroup without creating it.
func (m *Manager) pod(uid types.UID) *Pod {
	rel := path.Join(m.parent, "pod"+string(uid))
	return &Pod{m: m, rel: rel, g: m.backend.group(rel)}
}

// RemovePod kills everything in the cgroup of the pod with the given UID
// and removes it, without creating it first: use it when the pod's spec is
// not at hand. A pod without a cgroup is not an error.
func (m *Manager) RemovePod(uid types.UID) error {
	if err := checkName(string(uid)); err != nil {
		return fmt.Errorf("pod UID %q: %w", uid, err)
	}
	p := m.pod(uid)
	err := p.Kill()
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, p.Remove())
}

// checkName rejects a UID or container name that is not one path element.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return errors.New("not usable as a cgroup name")
	}
	return nil
}

// Path returns the pod cgroup's path relative to the hierarchy root, as
// /proc/PID/cgroup and cAdvisor's id label show it: "/peapod/pod<uid>".
func (p *Pod) Path() string { return "/" + p.rel }

// Stats reads the pod cgroup, which includes all its containers. The error
// matches fs.ErrNotExist when the cgroup does not exist.
func (p *Pod) Stats() (*Stats, error) {
	s, err := p.g.stats()
	if err != nil {
		return nil, fmt.Errorf("read stats of cgroup %s: %w", p.Path(), err)
	}
	return s, nil
}

// Kill SIGKILLs every process in every container of the pod. The processes
// exit shortly after it returns; Remove waits for them.
func (p *Pod) Kill() error {
	if err := p.g.kill(); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", p.Path(), err)
	}
	return nil
}

// Remove removes the pod cgroup and its container cgroups. The processes
// must be gone (see Kill); removal waits about a second for exiting tasks
// to leave. Removing a cgroup that does not exist is not an error.
func (p *Pod) Remove() error {
	if err := p.g.remove(); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", p.Path(), err)
	}
	return nil
}

// Container is one container's cgroup. It implements the runtime's
// CgroupPlacer. On v2 it holds the cgroup directory open: call Close (or
// Remove) when done with it, and not while another method runs.
type Container struct {
	rel string
	g   group
	fd  *os.File // v2 only
}

// Container creates the cgroup of the named container in the pod, or
// reopens it, and sets its limits: memory from limits.memory with swap off,
// CFS quota from limits.cpu and shares (weight on v2) from requests.cpu,
// defaulted to limits.cpu. Counters such as OOMKills live as long as the
// cgroup: remove it before starting a new attempt to start from zero.
func (p *Pod) Container(name string, c *corev1.Container) (*Container, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("container name %q: %w", name, err)
	}
	ctr := &Container{rel: path.Join(p.rel, name)}
	ctr.g = p.m.backend.group(ctr.rel)
	if err := p.m.backend.setup(ctr.rel); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", ctr.Path(), err)
	}
	if err := ctr.g.set(containerLimits(c)); err != nil {
		return nil, fmt.Errorf("set limits on cgroup %s: %w", ctr.Path(), err)
	}
	fd, err := ctr.g.openFD()
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", ctr.Path(), err)
	}
	ctr.fd = fd
	return ctr, nil
}

// Lookup returns a handle on the named container's cgroup without creating
// it or touching its limits, for reading; nil for a name that cannot be a
// cgroup. CgroupFD of the handle reports ok=false.
func (p *Pod) Lookup(name string) *Container {
	if checkName(name) != nil {
		return nil
	}
	rel := path.Join(p.rel, name)
	return &Container{rel: rel, g: p.m.backend.group(rel)}
}

// Path returns the container cgroup's path relative to the hierarchy root:
// "/peapod/pod<uid>/<name>".
func (c *Container) Path() string { return "/" + c.rel }

// PlaceProcess moves process pid, with all its threads, into the
// container's cgroups: its PID goes to cgroup.procs of every v1 hierarchy
// (or of the cgroup2 directory). It does nothing while the Container holds
// the descriptor CgroupFD returns: a process cloned into the cgroup through
// it is there already. Children pid forked before the call stay where they
// are, so call it before the process forks. On failure the process may be
// in some hierarchies and not others: kill it.
func (c *Container) PlaceProcess(pid int) error {
	if c.fd != nil {
		return nil
	}
	if err := c.g.place(pid); err != nil {
		return fmt.Errorf("place process in cgroup %s: %w", c.Path(), err)
	}
	return nil
}

// CgroupFD returns a descriptor of the container's cgroup2 directory for
// CLONE_INTO_CGROUP (SysProcAttr.UseCgroupFD), or ok=false when the limits
// are not on cgroup2 (v1 and hybrid hosts), where PlaceProcess does the
// job. The Container owns the descriptor: it stays valid until Close or
// Remove.
func (c *Container) CgroupFD() (fd int, ok bool) {
	if c.fd == nil {
		return -1, false
	}
	return int(c.fd.Fd()), true
}

// Close releases the descriptor returned by CgroupFD. The cgroup stays.
func (c *Container) Close() error {
	if c.fd == nil {
		return nil
	}
	err := c.fd.Close()
	c.fd = nil
	return err
}

// OOMKills returns how many processes the kernel's OOM killer has killed in
// the container's cgroup since it was created.
func (c *Container) OOMKills() (uint64, error) {
	n, err := c.g.oomKills()
	if err != nil {
		return 0, fmt.Errorf("read OOM kills of cgroup %s: %w", c.Path(), err)
	}
	return n, nil
}

// Stats reads the container's cgroup, like Pod.Stats.
func (c *Container) Stats() (*Stats, error) {
	s, err := c.g.stats()
	if err != nil {
		return nil, fmt.Errorf("read stats of cgroup %s: %w", c.Path(), err)
	}
	return s, nil
}

// Kill SIGKILLs every process in the container's cgroup, like Pod.Kill.
func (c *Container) Kill() error {
	if err := c.g.kill(); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.Path(), err)
	}
	return nil
}

// Remove closes the CgroupFD descriptor and removes the container's
// cgroup, like Pod.Remove.
func (c *Container) Remove() error {
	err := c.Close()
	if rerr := c.g.remove(); rerr != nil {
		err = errors.Join(err, fmt.Errorf("remove cgroup %s: %w", c.Path(), rerr))
	}
	return err
}
