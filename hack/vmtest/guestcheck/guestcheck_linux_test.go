package guestcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// requireGuest skips unless running in the hack/vmtest.sh guest: these tests
// create cgroups at the root of the hierarchy and expect its exact setup.
func requireGuest(t *testing.T) {
	t.Helper()
	if os.Getenv("PEAPOD_VMTEST") != "1" {
		t.Skip("guest-only test: run it with hack/vmtest.sh ./hack/vmtest/guestcheck")
	}
}

func TestCgroupV2Only(t *testing.T) {
	requireGuest(t)
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("%s has filesystem magic %#x, want cgroup2 (%#x)", cgroupRoot, st.Type, unix.CGROUP2_SUPER_MAGIC)
	}
	mounts := readFile(t, "/proc/self/mounts")
	for _, line := range strings.Split(mounts, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup" {
			t.Errorf("cgroup v1 hierarchy mounted: %s", line)
		}
	}
	if got := strings.TrimSpace(readFile(t, "/proc/self/cgroup")); !strings.HasPrefix(got, "0::/") {
		t.Errorf("/proc/self/cgroup = %q, want a single v2 entry 0::/...", got)
	}
	for _, file := range []string{"cgroup.controllers", "cgroup.subtree_control"} {
		have := strings.Fields(readFile(t, filepath.Join(cgroupRoot, file)))
		for _, c := range []string{"memory", "cpu", "pids"} {
			if !slices.Contains(have, c) {
				t.Errorf("%s/%s = %v, missing %s", cgroupRoot, file, have, c)
			}
		}
	}
}

// TestMemoryLimit runs a process that allocates 64 MiB in a leaf cgroup
// limited to 32 MiB, placed there at fork by clone3(CLONE_INTO_CGROUP), and
// expects the OOM killer to have been counted in memory.events.
func TestMemoryLimit(t *testing.T) {
	requireGuest(t)
	parent := makeCgroup(t, cgroupRoot, fmt.Sprintf("guestcheck-%d", os.Getpid()))
	writeFile(t, filepath.Join(parent, "cgroup.subtree_control"), "+memory +cpu +pids")
	leaf := makeCgroup(t, parent, "leaf")

	limitFile := "memory.max"
	if os.Getenv("GUESTCHECK_BREAK") == "v1" {
		limitFile = "memory.limit_in_bytes" // deliberately wrong: cgroup v1's name
	}
	writeFile(t, filepath.Join(leaf, limitFile), strconv.Itoa(32<<20))
	writeFile(t, filepath.Join(leaf, "memory.swap.max"), "0")
	writeFile(t, filepath.Join(leaf, "pids.max"), "16")
	writeFile(t, filepath.Join(leaf, "cpu.max"), "50000 100000")

	dir, err := os.Open(leaf)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// dd holds its whole 64 MiB block in memory.
	cmd := exec.Command("/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("64 MiB allocation in a 32 MiB cgroup: err = %v, want killed by SIGKILL; output:\n%s", err, out.String())
	}
	events := readFile(t, filepath.Join(leaf, "memory.events"))
	if n := field(events, "oom_kill"); n < 1 {
		t.Errorf("memory.events oom_kill = %d, want >= 1:\n%s", n, events)
	}
}

// TestRootfs checks the environment the harness exports for runtime tests.
func TestRootfs(t *testing.T) {
	requireGuest(t)
	for env, fs := range map[string]int64{"PEAPOD_ROOTFS_EXT4": unix.EXT4_SUPER_MAGIC, "PEAPOD_ROOTFS_TMPFS": unix.TMPFS_MAGIC} {
		dir := os.Getenv(env)
		if dir == "" {
			t.Errorf("%s is not set", env)
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Error(err)
			continue
		}
		if st.Type != fs {
			t.Errorf("%s=%s has filesystem magic %#x, want %#x", env, dir, st.Type, fs)
		}
		if _, err := os.Stat(filepath.Join(dir, "bin/sh")); err != nil {
			t.Errorf("%s: no busybox rootfs: %v", env, err)
		}
	}
	if got := strings.TrimSpace(readFile(t, "testdata/hello.txt")); got != "guestcheck testdata" {
		t.Errorf("testdata/hello.txt = %q", got)
	}
	if _, err := os.Stat("../../mkrootfs.sh"); err != nil {
		t.Errorf("hack/mkrootfs.sh is not reachable from the package directory: %v", err)
	}
	if bin := os.Getenv("PEAPOD_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Errorf("PEAPOD_BIN: %v", err)
		}
	}
}

// makeCgroup creates DIR/NAME and removes it when the test ends.
func makeCgroup(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeFile writes to an existing cgroup file; it never creates one.
func writeFile(t *testing.T, path, value string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("write %q to %s: %v", value, path, err)
	}
}

// field returns KEY's value in a flat-keyed cgroup file ("key value" lines).
func field(content, key string) int64 {
	for _, line := range strings.Split(content, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}
