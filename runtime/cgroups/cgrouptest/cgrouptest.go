// Package cgrouptest builds fake cgroup trees in a directory for tests that
// must run without root: v1 hierarchies or a cgroup2 hierarchy holding the
// files a kernel would show, with its default values.
package cgrouptest

import (
	"os"
	"path/filepath"
	"testing"

	occgroups "github.com/opencontainers/cgroups"
)

// V1Hierarchies are the hierarchies V1 creates, as on a typical v1 host
// (name=systemd is the "systemd" directory).
var V1Hierarchies = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd"}

// unlimitedV1 is what v1 shows for "no limit": 2^63-1 rounded down to a page.
const unlimitedV1 = "9223372036854771712"

var v1Files = map[string]map[string]string{
	"cpu": {
		"cpu.shares":        "1024\n",
		"cpu.cfs_period_us": "100000\n",
		"cpu.cfs_quota_us":  "-1\n",
		"cpu.stat":          "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
	},
	"cpuacct": {
		"cpuacct.stat":         "user 0\nsystem 0\n",
		"cpuacct.usage":        "0\n",
		"cpuacct.usage_percpu": "0 0 \n",
	},
	"cpuset": {
		"cpuset.cpus": "\n",
		"cpuset.mems": "\n",
	},
	"freezer": {"freezer.state": "THAWED\n"},
	"memory": {
		"memory.limit_in_bytes":           unlimitedV1 + "\n",
		"memory.usage_in_bytes":           "0\n",
		"memory.max_usage_in_bytes":       "0\n",
		"memory.failcnt":                  "0\n",
		"memory.memsw.limit_in_bytes":     unlimitedV1 + "\n",
		"memory.memsw.usage_in_bytes":     "0\n",
		"memory.memsw.max_usage_in_bytes": "0\n",
		"memory.memsw.failcnt":            "0\n",
		"memory.swappiness":               "60\n",
		"memory.use_hierarchy":            "1\n",
		"memory.oom_control":              "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
		"memory.stat":                     "cache 0\nrss 0\nswap 0\ninactive_file 0\ntotal_cache 0\ntotal_rss 0\ntotal_swap 0\ntotal_inactive_file 0\n",
	},
	"pids": {
		"pids.current": "0\n",
		"pids.max":     "max\n",
	},
}

var v2Files = map[string]string{
	"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc\n",
	"cgroup.subtree_control": "\n",
	"cgroup.procs":           "",
	"cgroup.freeze":          "0\n",
	"cgroup.kill":            "",
	"cpu.max":                "max 100000\n",
	"cpu.weight":             "100\n",
	"cpu.stat":               "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
	"memory.current":         "0\n",
	"memory.max":             "max\n",
	"memory.peak":            "0\n",
	"memory.swap.current":    "0\n",
	"memory.swap.max":        "max\n",
	"memory.events":          "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
	"memory.stat":            "anon 0\nfile 0\ninactive_file 0\nactive_file 0\n",
	"pids.current":           "0\n",
	"pids.max":               "max\n",
}

// enable lets the cgroups library use files outside /sys/fs/cgroup and
// create missing files on write (its TestMode), for the test's duration.
// Tests that use it must not run in parallel with root tests.
func enable(t testing.TB) {
	t.Helper()
	occgroups.TestMode = true
	t.Cleanup(func() { occgroups.TestMode = false })
}

// V1 makes root look like a v1 host (V1Hierarchies) and creates each
// cgroup in rels (e.g. "peapod/pod1/c") in every hierarchy, with a kernel's
// default files.
func V1(t testing.TB, root string, rels ...string) {
	t.Helper()
	enable(t)
	for _, h := range V1Hierarchies {
		writeFiles(t, filepath.Join(root, h), v1Files[h])
		Write(t, filepath.Join(root, h), "cgroup.procs", "")
		Write(t, filepath.Join(root, h), "tasks", "")
		for _, rel := range rels {
			v1Dirs(t, filepath.Join(root, h), rel, v1Files[h])
		}
	}
	Write(t, filepath.Join(root, "cpuset"), "cpuset.cpus", "0-1\n")
	Write(t, filepath.Join(root, "cpuset"), "cpuset.mems", "0\n")
}

// Hybrid is V1 plus a cgroup2 hierarchy without controllers at
// root/unified, as on a systemd host in hybrid mode.
func Hybrid(t testing.TB, root string, rels ...string) {
	t.Helper()
	V1(t, root, rels...)
	Write(t, filepath.Join(root, "unified"), "cgroup.controllers", "\n")
}

// v1Dirs creates rel and its ancestors under hier with files.
func v1Dirs(t testing.TB, hier, rel string, files map[string]string) {
	t.Helper()
	for dir := filepath.Join(hier, rel); dir != hier; dir = filepath.Dir(dir) {
		writeFiles(t, dir, files)
		Write(t, dir, "cgroup.procs", "")
		Write(t, dir, "tasks", "")
	}
}

// V2 makes root look like a cgroup2 hierarchy and creates each cgroup in
// rels, with a kernel's default files.
func V2(t testing.TB, root string, rels ...string) {
	t.Helper()
	enable(t)
	Write(t, root, "cgroup.controllers", v2Files["cgroup.controllers"])
	Write(t, root, "cgroup.subtree_control", "\n")
	Write(t, root, "cgroup.procs", "")
	for _, rel := range rels {
		for dir := filepath.Join(root, rel); dir != root; dir = filepath.Dir(dir) {
			writeFiles(t, dir, v2Files)
		}
	}
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		Write(t, dir, name, data)
	}
}

// Write writes data to dir/name, creating dir.
func Write(t testing.TB, dir, name, data string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Read returns the content of dir/name.
func Read(t testing.TB, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
