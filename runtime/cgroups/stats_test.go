package cgroups

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/peapod/peapod/runtime/cgroups/cgrouptest"
)

func TestV1Stats(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + string(testUID)
	cgrouptest.V1(t, root, pod+"/app", pod+"/log")
	p, ctrs := createAll(t, newManager(t, root))

	in := func(h string) string { return filepath.Join(root, h, pod, "app") }
	cgrouptest.Write(t, in("cpuacct"), "cpuacct.stat", "user 150\nsystem 50\n")
	cgrouptest.Write(t, in("cpuacct"), "cpuacct.usage", "2100000000\n")
	cgrouptest.Write(t, in("cpu"), "cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 4500000\nnr_bursts 0\n")
	cgrouptest.Write(t, in("memory"), "memory.usage_in_bytes", "10485760\n")
	cgrouptest.Write(t, in("memory"), "memory.failcnt", "7\n")
	cgrouptest.Write(t, in("memory"), "memory.stat", "cache 1\nrss 1\ntotal_cache 6291456\ntotal_rss 4194304\ntotal_swap 4096\ntotal_inactive_file 2097152\n")
	cgrouptest.Write(t, in("memory"), "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	cgrouptest.Write(t, in("pids"), "pids.current", "5\n")
	cgrouptest.Write(t, in("pids"), "cgroup.procs", "10\n11\n")

	got, err := ctrs["app"].Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := &Stats{
		CPUUsage: 2100000000, CPUUser: 1500000000, CPUSystem: 500000000,
		CFSPeriods: 10, CFSThrottledPeriods: 3, CFSThrottledTime: 4500000,
		MemoryUsage: 10485760, MemoryWorkingSet: 8388608, MemoryRSS: 4194304,
		MemoryCache: 6291456, MemorySwap: 4096, MemoryFailcnt: 7, OOMKills: 2,
		Processes: 2, Threads: 5,
		MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 512,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Container.Stats() (-want +got):\n%s", diff)
	}
	if n, err := ctrs["app"].OOMKills(); err != nil || n != 2 {
		t.Errorf("OOMKills() = %d, %v; want 2", n, err)
	}

	// The pod has no memory or CPU limit ("log" sets none); v1 shows that
	// as 2^63 rounded down to a page and -1.
	cgrouptest.Write(t, filepath.Join(root, "memory", pod), "memory.limit_in_bytes", "9223372036854771712\n")
	ps, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ps.MemoryLimit != 0 || ps.CPUQuota != 0 || ps.CPUShares != 614 || ps.Processes != 2 {
		t.Errorf("Pod.Stats() = %+v, want no memory limit or quota, 614 shares, the container's 2 processes", ps)
	}
}

func TestV2Stats(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + string(testUID)
	cgrouptest.V2(t, root, pod+"/app", pod+"/log")
	p, ctrs := createAll(t, newManager(t, root))

	dir := filepath.Join(root, pod, "app")
	cgrouptest.Write(t, dir, "cpu.stat", "usage_usec 2100000\nuser_usec 1500000\nsystem_usec 600000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 4500\n")
	cgrouptest.Write(t, dir, "memory.current", "10485760\n")
	cgrouptest.Write(t, dir, "memory.stat", "anon 4194304\nfile 6291456\ninactive_file 11000000\n")
	cgrouptest.Write(t, dir, "memory.swap.current", "4096\n")
	cgrouptest.Write(t, dir, "memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n")
	cgrouptest.Write(t, dir, "pids.current", "5\n")
	cgrouptest.Write(t, dir, "cgroup.procs", "10\n11\n12\n")

	got, err := ctrs["app"].Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := &Stats{
		CPUUsage: 2100000000, CPUUser: 1500000000, CPUSystem: 600000000,
		CFSPeriods: 10, CFSThrottledPeriods: 3, CFSThrottledTime: 4500000,
		// inactive_file exceeds usage: the working set floors at 0.
		MemoryUsage: 10485760, MemoryWorkingSet: 0, MemoryRSS: 4194304,
		MemoryCache: 6291456, MemorySwap: 4096, OOMKills: 1,
		Processes: 3, Threads: 5,
		MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 500,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Container.Stats() (-want +got):\n%s", diff)
	}

	ps, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ps.MemoryLimit != 0 || ps.CPUQuota != 0 || ps.CPUPeriod != 100000 || ps.Processes != 3 {
		t.Errorf("Pod.Stats() = %+v, want no memory limit or quota, period 100000, the container's 3 processes", ps)
	}
}

func TestStatsGone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, root string)
	}{
		{"v1", func(t *testing.T, root string) { cgrouptest.V1(t, root) }},
		{"v2", func(t *testing.T, root string) { cgrouptest.V2(t, root) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.build(t, root)
			_, err := newManager(t, root).pod(testUID).Stats()
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stats() of a missing cgroup = %v, want fs.ErrNotExist", err)
			}
		})
	}
}
