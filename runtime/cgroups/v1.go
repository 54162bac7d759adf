package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	occgroups "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fscommon"
)

// v1Subsystems are the v1 controllers a container is placed in when their
// hierarchy is mounted, named as in /proc/<pid>/cgroup.
var v1Subsystems = []string{
	"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
	"memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
	"name=systemd",
}

// v1Required are the hierarchies peapod cannot work without: the limits
// live in memory, cpu and pids, the CPU usage in cpuacct, and Kill needs the
// freezer to stop forks while it signals.
var v1Required = []string{"cpu", "cpuacct", "freezer", "memory", "pids"}

// v1 manages cgroups in the v1 hierarchies mounted under one root.
type v1 struct {
	// subsysDirs maps each mounted subsystem to its hierarchy's root.
	subsysDirs map[string]string
	// hierarchies lists the root directory of each hierarchy once (for
	// co-mounted controllers, such as cpu,cpuacct, the first peapod saw).
	hierarchies []string
}

// newV1 finds the v1 hierarchies mounted under root, one directory per
// hierarchy named after its controller ("systemd" for name=systemd), told
// from a stray directory by its cgroup.procs. Co-mounted controllers
// (cpu,cpuacct) show as symlinks to one directory.
func newV1(root string) (*v1, error) {
	b := &v1{subsysDirs: map[string]string{}}
	seen := map[string]bool{}
	for _, s := range v1Subsystems {
		dir := filepath.Join(root, strings.TrimPrefix(s, "name="))
		if !exists(filepath.Join(dir, "cgroup.procs")) {
			continue
		}
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, err
		}
		b.subsysDirs[s] = dir
		if !seen[real] {
			seen[real] = true
			b.hierarchies = append(b.hierarchies, dir)
		}
	}
	for _, s := range v1Required {
		if _, ok := b.subsysDirs[s]; !ok {
			return nil, fmt.Errorf("find cgroup v1 hierarchies under %s: %s is not mounted", root, s)
		}
	}
	return b, nil
}

func (b *v1) group(rel string) group {
	paths := make(map[string]string, len(b.subsysDirs))
	for s, dir := range b.subsysDirs {
		paths[s] = filepath.Join(dir, rel)
	}
	return &v1Group{b: b, rel: rel, paths: paths}
}

// setup creates rel in every hierarchy. The library does it so that a new
// cpuset cgroup gets its parent's cpus and mems: the kernel leaves them
// empty, and a task cannot join a cpuset without CPUs.
func (b *v1) setup(rel string) error {
	m, err := b.group(rel).(*v1Group).manager(&occgroups.Resources{})
	if err != nil {
		return err
	}
	return m.Apply(-1)
}

func (b *v1) children(rel string) ([]string, error) {
	var all []string
	for _, h := range b.hierarchies {
		names, err := readDirNames(filepath.Join(h, rel))
		if err != nil {
			return nil, err
		}
		all = append(all, names...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// v1Group is one cgroup path in every v1 hierarchy.
type v1Group struct {
	b     *v1
	rel   string
	paths map[string]string // subsystem → cgroup directory
}

// manager returns the library's v1 manager for the group, set up with r.
// It is cheap and holds no open files.
func (g *v1Group) manager(r *occgroups.Resources) (*fs.Manager, error) {
	return fs.NewManager(&occgroups.Cgroup{Resources: r}, g.paths)
}

func (g *v1Group) set(l limits) error {
	memsw := exists(filepath.Join(g.paths["memory"], "memory.memsw.limit_in_bytes"))
	r := v1Resources(l, memsw)
	m, err := g.manager(r)
	if err != nil {
		return err
	}
	return m.Set(r)
}

// v1Resources converts limits to the library's v1 resources. Unlimited
// values are written as -1 so that reopening a cgroup always converges on
// the spec. memsw reports whether the kernel accounts swap per cgroup.
func v1Resources(l limits, memsw bool) *occgroups.Resources {
	r := &occgroups.Resources{
		Memory:    -1,
		CpuShares: l.cpuShares,
		CpuQuota:  -1,
		CpuPeriod: quotaPeriod,
	}
	if l.memory > 0 {
		r.Memory = l.memory
	}
	if l.noSwap {
		// swappiness 0 keeps the cgroup's anonymous memory out of swap;
		// memsw = memory makes the limit cover swap where it is accounted.
		r.MemorySwappiness = new(uint64)
		if memsw {
			r.MemorySwap = l.memory
		}
	}
	if l.cpuQuota > 0 {
		r.CpuQuota = l.cpuQuota
	}
	if l.pids != 0 {
		r.PidsLimit = &l.pids
	}
	return r
}

// stats reads the files the Stats fields come from and no others. The
// library's Stats reads about thirty files per cgroup on v1 (the usage,
// peak, failcnt and limit of memsw, kmem and kmem.tcp, per-CPU accounting)
// that no exported series uses: at 200 containers a scrape opened over
// 6000 files and took ~400 ms.
func (g *v1Group) stats() (*Stats, error) {
	var (
		s   Stats
		err error
		r   = fileReader{}
	)
	cpuacct, cpu, mem := g.paths["cpuacct"], g.paths["cpu"], g.paths["memory"]
	s.CPUUsage = r.uint(cpuacct, "cpuacct.usage")
	// cpuacct.stat counts USER_HZ ticks.
	ticks := r.keyValues(cpuacct, "cpuacct.stat")
	s.CPUUser, s.CPUSystem = ticks["user"]*nsPerTick, ticks["system"]*nsPerTick
	cfs := r.keyValues(cpu, "cpu.stat")
	s.CFSPeriods, s.CFSThrottledPeriods, s.CFSThrottledTime = cfs["nr_periods"], cfs["nr_throttled"], cfs["throttled_time"]
	s.MemoryUsage = r.uint(mem, "memory.usage_in_bytes")
	if limit := r.uint(mem, "memory.limit_in_bytes"); limit <= unlimited {
		s.MemoryLimit = limit
	}
	s.MemoryFailcnt = r.uint(mem, "memory.failcnt")
	ms := r.keyValues(mem, "memory.stat")
	s.MemoryRSS, s.MemoryCache, s.MemorySwap = ms["total_rss"], ms["total_cache"], ms["total_swap"]
	if inactive := ms["total_inactive_file"]; inactive < s.MemoryUsage {
		s.MemoryWorkingSet = s.MemoryUsage - inactive
	}
	s.Threads = r.uint(g.paths["pids"], "pids.current")
	if r.err != nil {
		return nil, r.err
	}
	if s.OOMKills, err = g.oomKills(); err != nil {
		return nil, err
	}
	if s.Processes, err = countProcs(g.paths["pids"]); err != nil {
		return nil, err
	}
	return &s, g.readCPUSpec(&s)
}

// nsPerTick converts USER_HZ ticks, which Linux fixes at 100 a second for
// user space, to nanoseconds.
const nsPerTick = 10_000_000

// fileReader reads cgroup files and keeps the first error, so that a
// sequence of reads is checked once.
type fileReader struct{ err error }

func (r *fileReader) read(dir, file string) string {
	if r.err != nil {
		return ""
	}
	v, err := occgroups.ReadFile(dir, file)
	if err != nil {
		r.err = err
	}
	return v
}

// uint reads a file holding one number ("max" reads as the largest).
func (r *fileReader) uint(dir, file string) uint64 {
	v := strings.TrimSpace(r.read(dir, file))
	if r.err != nil {
		return 0
	}
	n, err := fscommon.ParseUint(v, 10, 64)
	if err != nil {
		r.err = fmt.Errorf("parse %s/%s: %w", dir, file, err)
	}
	return n
}

// keyValues reads a file of "key value" lines.
func (r *fileReader) keyValues(dir, file string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(r.read(dir, file), "\n") {
		if line == "" || r.err != nil {
			continue
		}
		k, v, err := fscommon.ParseKeyValue(line)
		if err != nil {
			r.err = fmt.Errorf("parse %s/%s: %w", dir, file, err)
			continue
		}
		out[k] = v
	}
	return out
}

// readCPUSpec reads the CFS settings, which the library does not report.
func (g *v1Group) readCPUSpec(s *Stats) error {
	dir := g.paths["cpu"]
	quota, err := fscommon.GetCgroupParamInt(dir, "cpu.cfs_quota_us")
	if err != nil {
		return err
	}
	s.CPUQuota = uint64(max(quota, 0))
	if s.CPUPeriod, err = fscommon.GetCgroupParamUint(dir, "cpu.cfs_period_us"); err != nil {
		return err
	}
	s.CPUShares, err = fscommon.GetCgroupParamUint(dir, "cpu.shares")
	return err
}

// oomKills reads oom_kill from memory.oom_control: the number of processes
// the OOM killer killed in this cgroup and below. memory.failcnt is no
// substitute: it stays 0 when memsw is limited too.
func (g *v1Group) oomKills() (uint64, error) {
	return v1OOMKills(g.paths["memory"])
}

// v1OOMKills sums oom_kill over dir and every cgroup below it. Unlike
// cgroup v2's memory.events, the v1 counter is not hierarchical: the kernel
// counts a kill only in the cgroup whose limit was hit, so without the sum a
// pod cgroup shows 0 after one of its containers was OOM-killed. A child
// removed during the walk is skipped; dir itself missing is an error
// matching os.ErrNotExist.
func v1OOMKills(dir string) (uint64, error) {
	n, err := fs.OOMKillCount(dir)
	if err != nil {
		return 0, err
	}
	children, err := readDirNames(dir)
	if err != nil {
		return 0, err
	}
	for _, c := range children {
		m, err := v1OOMKills(filepath.Join(dir, c))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// kill SIGKILLs everything in the cgroup and below (see killFrozen).
func (g *v1Group) kill() error {
	m, err := g.manager(&occgroups.Resources{})
	if err != nil {
		return err
	}
	return killFrozen(m, g.paths["freezer"])
}

func (g *v1Group) remove() error {
	var errs []error
	for _, h := range g.b.hierarchies {
		errs = append(errs, occgroups.RemovePath(filepath.Join(h, g.rel)))
	}
	return errors.Join(errs...)
}

// place moves process pid, with all its threads, into the group in every
// hierarchy through cgroup.procs: the kernel moves the thread group at once,
// under a lock that thread creation also takes, so no thread is left
// behind (children the process forked earlier stay where they are). It
// stops at the first failure, leaving the process in some hierarchies
// only: the caller kills it.
func (g *v1Group) place(pid int) error {
	for _, h := range g.b.hierarchies {
		if err := moveProcess(filepath.Join(h, g.rel), pid); err != nil {
			return err
		}
	}
	return nil
}

// openFD reports that v1 has no cgroup2 directory to clone into.
func (g *v1Group) openFD() (*os.File, error) { return nil, nil }

func moveProcess(dir string, pid int) error {
	if err := occgroups.WriteFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("move process %d to %s: %w", pid, dir, err)
	}
	return nil
}
