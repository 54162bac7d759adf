package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/cgroups/cgrouptest"
)

const testUID = types.UID("0123abcd")

// testPod has one limited container "app" and one unlimited "log".
func testPod() *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		ctr("app", res("500m", "64Mi"), nil),
		ctr("log", nil, res("100m", "")),
	}}}
}

func newManager(t *testing.T, root string) *Manager {
	t.Helper()
	m, err := New(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// createAll creates the test pod's cgroup and its containers' cgroups.
func createAll(t *testing.T, m *Manager) (*Pod, map[string]*Container) {
	t.Helper()
	pod := testPod()
	p, err := m.Pod(testUID, pod)
	if err != nil {
		t.Fatal(err)
	}
	ctrs := map[string]*Container{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if ctrs[c.Name], err = p.Container(c.Name, c); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ctrs[c.Name].Close() })
	}
	return p, ctrs
}

// checkFiles compares files (path relative to root → content) with want.
func checkFiles(t *testing.T, root string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for f := range want {
		got[f] = cgrouptest.Read(t, root, f)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cgroup files (-want +got):\n%s", diff)
	}
}

func TestDetectMode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, root string)
		want  string
	}{
		{"v1", func(t *testing.T, root string) { cgrouptest.V1(t, root) }, ModeV1},
		{"hybrid", func(t *testing.T, root string) { cgrouptest.Hybrid(t, root) }, ModeHybrid},
		{"v2", func(t *testing.T, root string) { cgrouptest.V2(t, root) }, ModeV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.build(t, root)
			if got := newManager(t, root).Mode(); got != tc.want {
				t.Errorf("Mode() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V2(t, root)
	for _, opts := range []Options{
		{Root: t.TempDir()},
		{Root: root, Parent: "/abs"},
		{Root: root, Parent: "../up"},
		{Root: root, PodPidsLimit: -2},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", opts)
		}
	}
}

func TestNewV1MissingHierarchy(t *testing.T) {
	root := t.TempDir()
	cgrouptest.Write(t, filepath.Join(root, "memory"), "memory.stat", "")
	if _, err := New(Options{Root: root}); err == nil {
		t.Error("New succeeded without cpu, cpuacct, freezer and pids hierarchies")
	}
}

func TestV1Limits(t *testing.T) {
	root := t.TempDir()
	cgrouptest.Hybrid(t, root, "peapod/pod"+string(testUID)+"/app", "peapod/pod"+string(testUID)+"/log")
	p, ctrs := createAll(t, newManager(t, root))

	pod := "peapod/pod" + string(testUID)
	checkFiles(t, root, map[string]string{
		"memory/" + pod + "/memory.limit_in_bytes": "-1", // "log" has no limit
		"cpu/" + pod + "/cpu.cfs_quota_us":         "-1",
		"cpu/" + pod + "/cpu.shares":               "614",
		"pids/" + pod + "/pids.max":                "4096",

		"memory/" + pod + "/app/memory.limit_in_bytes":       "67108864",
		"memory/" + pod + "/app/memory.memsw.limit_in_bytes": "67108864",
		"memory/" + pod + "/app/memory.swappiness":           "0",
		"cpu/" + pod + "/app/cpu.cfs_quota_us":               "50000",
		"cpu/" + pod + "/app/cpu.cfs_period_us":              "100000",
		"cpu/" + pod + "/app/cpu.shares":                     "512",
		"pids/" + pod + "/app/pids.max":                      "max\n", // untouched

		"memory/" + pod + "/log/memory.limit_in_bytes":       "-1",
		"memory/" + pod + "/log/memory.memsw.limit_in_bytes": "-1",
		"memory/" + pod + "/log/memory.swappiness":           "60\n",
		"cpu/" + pod + "/log/cpu.cfs_quota_us":               "-1",
		"cpu/" + pod + "/log/cpu.shares":                     "102",
	})
	if got, want := p.Path(), "/peapod/pod"+string(testUID); got != want {
		t.Errorf("Pod.Path() = %q, want %q", got, want)
	}
	if got, want := ctrs["app"].Path(), "/peapod/pod"+string(testUID)+"/app"; got != want {
		t.Errorf("Container.Path() = %q, want %q", got, want)
	}
	if fd, ok := ctrs["app"].CgroupFD(); ok {
		t.Errorf("CgroupFD() = %d, true on v1, want false", fd)
	}
}

func TestV1NoMemsw(t *testing.T) {
	root := t.TempDir()
	rel := "peapod/pod" + string(testUID) + "/app"
	cgrouptest.V1(t, root, rel, "peapod/pod"+string(testUID)+"/log")
	for dir := filepath.Join(root, "memory", rel); dir != filepath.Join(root, "memory"); dir = filepath.Dir(dir) {
		for _, f := range []string{"limit_in_bytes", "usage_in_bytes", "max_usage_in_bytes", "failcnt"} {
			if err := os.Remove(filepath.Join(dir, "memory.memsw."+f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	createAll(t, newManager(t, root))
	checkFiles(t, root, map[string]string{
		"memory/" + rel + "/memory.limit_in_bytes": "67108864",
		"memory/" + rel + "/memory.swappiness":     "0",
	})
}

func TestV2Limits(t *testing.T) {
	root := t.TempDir()
	pod := "peapod/pod" + string(testUID)
	cgrouptest.V2(t, root, pod+"/app", pod+"/log")
	m := newManager(t, root)
	_, ctrs := createAll(t, m)

	checkFiles(t, root, map[string]string{
		"cgroup.subtree_control":            "+cpu +memory +pids",
		"peapod/cgroup.subtree_control":     "+cpu +memory +pids",
		pod + "/cgroup.subtree_control":     "+cpu +memory +pids",
		pod + "/app/cgroup.subtree_control": "\n",

		pod + "/memory.max": "max",
		pod + "/cpu.max":    "max 100000",
		pod + "/cpu.weight": "24",
		pod + "/pids.max":   "4096",

		pod + "/app/memory.max":      "67108864",
		pod + "/app/memory.swap.max": "0",
		pod + "/app/cpu.max":         "50000 100000",
		pod + "/app/cpu.weight":      "20",
		pod + "/app/pids.max":        "max\n",

		pod + "/log/memory.max":      "max",
		pod + "/log/memory.swap.max": "max",
		pod + "/log/cpu.max":         "max 100000",
		pod + "/log/cpu.weight":      "4",
	})
	if _, ok := ctrs["app"].CgroupFD(); !ok {
		t.Error("CgroupFD() on v2 = false, want an fd")
	}
}

func TestV2ControllerNotDelegated(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V2(t, root, "peapod/pod"+string(testUID))
	cgrouptest.Write(t, filepath.Join(root, "peapod"), "cgroup.controllers", "cpu pids\n")
	if _, err := newManager(t, root).Pod(testUID, testPod()); err == nil {
		t.Error("Pod() succeeded although memory is not delegated to the parent")
	}
}

func TestV2EnablesOnlyMissingControllers(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V2(t, root, "peapod/pod"+string(testUID))
	cgrouptest.Write(t, root, "cgroup.subtree_control", "cpu memory pids\n")
	cgrouptest.Write(t, filepath.Join(root, "peapod"), "cgroup.subtree_control", "memory\n")
	if _, err := newManager(t, root).Pod(testUID, testPod()); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, root, map[string]string{
		"cgroup.subtree_control":        "cpu memory pids\n",
		"peapod/cgroup.subtree_control": "+cpu +pids",
	})
}

func TestBadNames(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V2(t, root)
	m := newManager(t, root)
	for _, uid := range []types.UID{"", "..", "a/b"} {
		if _, err := m.Pod(uid, testPod()); err == nil {
			t.Errorf("Pod(%q) succeeded", uid)
		}
	}
}

// TestPlaceProcess checks where PlaceProcess writes: the PID to cgroup.procs
// (the whole process), never to tasks (one thread), in every v1 hierarchy;
// on v2 nothing while the Container holds its CLONE_INTO_CGROUP fd.
func TestPlaceProcess(t *testing.T) {
	pod := "peapod/pod" + string(testUID)

	root := t.TempDir()
	cgrouptest.V1(t, root, pod+"/app", pod+"/log")
	_, ctrs := createAll(t, newManager(t, root))
	if err := ctrs["app"].PlaceProcess(4242); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, h := range cgrouptest.V1Hierarchies {
		want[h+"/"+pod+"/app/cgroup.procs"] = "4242"
		want[h+"/"+pod+"/app/tasks"] = ""
		want[h+"/cgroup.procs"] = ""
	}
	checkFiles(t, root, want)

	root = t.TempDir()
	cgrouptest.V2(t, root, pod+"/app", pod+"/log")
	m := newManager(t, root)
	_, ctrs = createAll(t, m)
	if err := ctrs["app"].PlaceProcess(4242); err != nil {
		t.Fatal(err)
	}
	if err := m.Lookup(testUID).Lookup("log").PlaceProcess(4343); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, root, map[string]string{
		pod + "/app/cgroup.procs": "",
		pod + "/log/cgroup.procs": "4343",
	})
}

func TestPlaceProcessMissingCgroup(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V1(t, root, "peapod/pod"+string(testUID))
	m := newManager(t, root)
	c := m.Lookup(testUID).Lookup("gone")
	if err := c.PlaceProcess(4242); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PlaceProcess into a cgroup that does not exist: %v, want ErrNotExist", err)
	}
}

// parseProcCgroup maps each v1 controller in a /proc/<pid>/cgroup file to
// the task's cgroup path, e.g. "4:memory:/a" → {"memory": "/a"}. Co-mounted
// controllers each get the path; the cgroup2 line ("0::/x") is skipped.
func parseProcCgroup(data string) map[string]string {
	paths := map[string]string{}
	for line := range strings.Lines(data) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths
}

func TestParseProcCgroup(t *testing.T) {
	data := "12:name=systemd:/\n4:memory:/process_api/x\n2:cpu,cpuacct:/a b\n0::/\n"
	want := map[string]string{"name=systemd": "/", "memory": "/process_api/x", "cpu": "/a b", "cpuacct": "/a b"}
	if diff := cmp.Diff(want, parseProcCgroup(data)); diff != "" {
		t.Errorf("parseProcCgroup (-want +got):\n%s", diff)
	}
}

func TestLookupDoesNotCreate(t *testing.T) {
	root := t.TempDir()
	cgrouptest.V2(t, root)
	m := newManager(t, root)
	p := m.Lookup(testUID)
	if p.Path() != "/peapod/pod"+string(testUID) {
		t.Errorf("Lookup path = %q", p.Path())
	}
	if _, err := p.Lookup("app").Stats(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stats of a container never created: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(root, "peapod", "pod"+string(testUID))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lookup created the pod cgroup (stat err = %v)", err)
	}
	if m.Lookup("../escape") != nil || p.Lookup("a/b") != nil {
		t.Error("Lookup accepted a name that is not one path element")
	}
}
