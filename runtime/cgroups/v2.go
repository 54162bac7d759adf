package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	occgroups "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/fscommon"
	"golang.org/x/sys/unix"
)

// v2Controllers are the controllers peapod's limits need.
var v2Controllers = []string{"cpu", "memory", "pids"}

// v2 manages cgroups in the unified hierarchy mounted at root.
type v2 struct {
	root string
}

func (b *v2) group(rel string) group {
	return &v2Group{dir: filepath.Join(b.root, rel)}
}

// setup creates rel and any missing ancestor, enabling the controllers in
// each ancestor's cgroup.subtree_control on the way down: a controller's
// files appear in a cgroup only when its parent enables it there.
func (b *v2) setup(rel string) error {
	dir := b.root
	for elem := range strings.SplitSeq(rel, "/") {
		if err := enableControllers(dir); err != nil {
			return err
		}
		dir = filepath.Join(dir, elem)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// enableControllers enables v2Controllers for dir's children, writing only
// the ones not enabled yet, so that cgroups peapod does not own (the root,
// a systemd slice) are only written to when they lack something.
func enableControllers(dir string) error {
	avail, err := readFields(dir, "cgroup.controllers")
	if err != nil {
		return err
	}
	enabled, err := readFields(dir, "cgroup.subtree_control")
	if err != nil {
		return err
	}
	var add []string
	for _, c := range v2Controllers {
		if enabled[c] {
			continue
		}
		if !avail[c] {
			return fmt.Errorf("enable controller %s in %s: not delegated to it (with systemd, run the agent with Delegate=yes)", c, dir)
		}
		add = append(add, "+"+c)
	}
	if len(add) == 0 {
		return nil
	}
	err = occgroups.WriteFile(dir, "cgroup.subtree_control", strings.Join(add, " "))
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("enable controllers in %s: it holds processes; move them to a leaf cgroup: %w", dir, err)
	}
	return err
}

func readFields(dir, file string) (map[string]bool, error) {
	data, err := occgroups.ReadFile(dir, file)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for f := range strings.FieldsSeq(data) {
		set[f] = true
	}
	return set, nil
}

func (b *v2) children(rel string) ([]string, error) {
	return readDirNames(filepath.Join(b.root, rel))
}

// v2Group is one cgroup in the unified hierarchy.
type v2Group struct {
	dir string
}

func (g *v2Group) manager(r *occgroups.Resources) (*fs2.Manager, error) {
	return fs2.NewManager(&occgroups.Cgroup{Resources: r}, g.dir)
}

func (g *v2Group) set(l limits) error {
	r := v2Resources(l)
	m, err := g.manager(r)
	if err != nil {
		return err
	}
	return m.Set(r)
}

// v2Resources converts limits to the library's v2 resources. Unlimited
// values are written as "max" so that reopening a cgroup converges on the
// spec.
func v2Resources(l limits) *occgroups.Resources {
	r := &occgroups.Resources{
		Memory:    -1,
		CpuWeight: sharesToWeight(l.cpuShares),
		CpuQuota:  -1,
		CpuPeriod: quotaPeriod,
	}
	if l.memory > 0 {
		r.Memory = l.memory
	}
	if l.noSwap {
		// Memory+swap equal to memory: the library writes memory.swap.max 0.
		r.MemorySwap = l.memory
	}
	if l.cpuQuota > 0 {
		r.CpuQuota = l.cpuQuota
	}
	if l.pids != 0 {
		r.PidsLimit = &l.pids
	}
	return r
}

func (g *v2Group) stats() (*Stats, error) {
	m, err := g.manager(&occgroups.Resources{})
	if err != nil {
		return nil, err
	}
	lib, err := m.Stats(&occgroups.StatsOptions{
		Controllers: occgroups.CPU | occgroups.Memory | occgroups.Pids,
	})
	if err != nil && !exists(g.dir) {
		// The library flattens its errors: say plainly that the cgroup
		// is gone, which a reader racing with removal expects.
		return nil, fmt.Errorf("%s: %w", g.dir, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	s := statsFrom(lib, "anon", "file", "inactive_file")
	s.MemorySwap = lib.MemoryStats.SwapOnlyUsage.Usage
	if s.OOMKills, err = g.oomKills(); err != nil {
		return nil, err
	}
	if s.Processes, err = countProcs(g.dir); err != nil {
		return nil, err
	}
	return s, g.readCPUSpec(s)
}

// readCPUSpec reads cpu.max ("max 100000" or "50000 100000") and
// cpu.weight, which the library does not report.
func (g *v2Group) readCPUSpec(s *Stats) error {
	cpuMax, err := occgroups.ReadFile(g.dir, "cpu.max")
	if err != nil {
		return err
	}
	quota, period, ok := strings.Cut(strings.TrimSpace(cpuMax), " ")
	if !ok {
		return fmt.Errorf("parse %s/cpu.max: %q", g.dir, cpuMax)
	}
	if s.CPUPeriod, err = strconv.ParseUint(period, 10, 64); err != nil {
		return fmt.Errorf("parse %s/cpu.max: %w", g.dir, err)
	}
	if quota != "max" {
		if s.CPUQuota, err = strconv.ParseUint(quota, 10, 64); err != nil {
			return fmt.Errorf("parse %s/cpu.max: %w", g.dir, err)
		}
	}
	weight, err := fscommon.GetCgroupParamUint(g.dir, "cpu.weight")
	s.CPUShares = weightToShares(weight)
	return err
}

// oomKills reads oom_kill from memory.events (hierarchical).
func (g *v2Group) oomKills() (uint64, error) {
	return fs2.OOMKillCount(g.dir)
}

// kill writes cgroup.kill (Linux 5.14+), which SIGKILLs everything in the
// subtree atomically with respect to forks. Older kernels get the same
// effect from freeze, signal, thaw.
func (g *v2Group) kill() error {
	err := occgroups.WriteFile(g.dir, "cgroup.kill", "1")
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	m, err := g.manager(&occgroups.Resources{})
	if err != nil {
		return err
	}
	return killFrozen(m, g.dir)
}

func (g *v2Group) remove() error {
	return occgroups.RemovePath(g.dir)
}

// place moves process pid, with all its threads, into the group. Container
// does not call it when it holds the fd from openFD: the process was cloned
// into the group.
func (g *v2Group) place(pid int) error {
	if err := occgroups.WriteFile(g.dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("move process %d to %s: %w", pid, g.dir, err)
	}
	return nil
}

// openFD opens the cgroup directory for CLONE_INTO_CGROUP. It must not be
// O_PATH: clone3 rejects O_PATH descriptors.
func (g *v2Group) openFD() (*os.File, error) {
	return os.OpenFile(g.dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
}
