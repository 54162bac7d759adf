package cgroups

import (
	occgroups "github.com/opencontainers/cgroups"
)

// Stats is one reading of a cgroup, in the terms cAdvisor uses, the same on
// cgroup v1 and v2. Usage counts the cgroup and everything below it.
type Stats struct {
	// CPU time used, in nanoseconds: total, user and system.
	CPUUsage, CPUUser, CPUSystem uint64
	// CFS bandwidth control: enforcement periods elapsed, periods in which
	// the cgroup was throttled, and the time it spent throttled (ns).
	CFSPeriods, CFSThrottledPeriods, CFSThrottledTime uint64

	// MemoryUsage is the memory charged to the cgroup, page cache included.
	MemoryUsage uint64
	// MemoryWorkingSet is MemoryUsage minus inactive file pages, floored
	// at 0: what kubelet compares with the limit for evictions.
	MemoryWorkingSet uint64
	// MemoryRSS is anonymous memory (v1 total_rss, v2 anon).
	MemoryRSS uint64
	// MemoryCache is page cache (v1 total_cache, v2 file).
	MemoryCache uint64
	// MemorySwap is swap used (v1 total_swap, v2 memory.swap.current).
	MemorySwap uint64
	// MemoryFailcnt is v1 memory.failcnt, the number of times usage hit the
	// limit; 0 on v2, and 0 on v1 when memsw is limited as well.
	MemoryFailcnt uint64
	// OOMKills is the number of processes the OOM killer killed here.
	OOMKills uint64

	// Processes counts processes, Threads counts tasks (pids.current).
	Processes, Threads uint64

	// MemoryLimit is the memory limit in bytes; 0 when unlimited.
	MemoryLimit uint64
	// CPUQuota is the CFS quota in µs per CPUPeriod; 0 when unlimited.
	CPUQuota, CPUPeriod uint64
	// CPUShares is v1 cpu.shares, or v2 cpu.weight converted to shares.
	CPUShares uint64
}

// unlimited is where cAdvisor draws the line between a limit and "none":
// v1 shows no limit as 2^63-1 rounded down to a page, v2 as "max" (read as
// 2^64-1).
const unlimited = 1 << 62

// statsFrom fills the fields common to both versions from the library's
// reading; the memory.stat keys differ between versions.
func statsFrom(lib *occgroups.Stats, rssKey, cacheKey, inactiveFileKey string) *Stats {
	mem := lib.MemoryStats
	s := &Stats{
		CPUUsage:            lib.CpuStats.CpuUsage.TotalUsage,
		CPUUser:             lib.CpuStats.CpuUsage.UsageInUsermode,
		CPUSystem:           lib.CpuStats.CpuUsage.UsageInKernelmode,
		CFSPeriods:          lib.CpuStats.ThrottlingData.Periods,
		CFSThrottledPeriods: lib.CpuStats.ThrottlingData.ThrottledPeriods,
		CFSThrottledTime:    lib.CpuStats.ThrottlingData.ThrottledTime,
		MemoryUsage:         mem.Usage.Usage,
		MemoryRSS:           mem.Stats[rssKey],
		MemoryCache:         mem.Stats[cacheKey],
		MemoryFailcnt:       mem.Usage.Failcnt,
		Threads:             lib.PidsStats.Current,
	}
	if inactive := mem.Stats[inactiveFileKey]; inactive < s.MemoryUsage {
		s.MemoryWorkingSet = s.MemoryUsage - inactive
	}
	if mem.Usage.Limit <= unlimited {
		s.MemoryLimit = mem.Usage.Limit
	}
	return s
}

// countProcs counts the processes in the cgroup at dir and below.
func countProcs(dir string) (uint64, error) {
	pids, err := occgroups.GetAllPids(dir)
	return uint64(len(pids)), err
}
