package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The detector: every container runs
//
//	sh -c "trap 'exit 0' TERM; sleep MARKER & wait"
//
// so both its main process (sh) and its child carry MARKER, a number no other
// process has. A container runs when its sleep runs: sh has then set its
// TERM trap (before that, sh as PID 1 of its pid namespace would ignore a
// SIGTERM and every system would wait out the grace period). A pod is gone
// when no process carries any of its markers. Agents, shims, conmon and runtimes are never counted even if their
// command lines held the command, because their argv[0] is not sh or sleep.

// scanStats accumulates the detector's own cost, reported with the table.
// ev, when set, is the event source the detector waits on; scans then only
// confirm that processes are gone, or stand in when events were lost.
type scanStats struct {
	n     int
	total time.Duration
	ev    *procEvents
}

// containerScript is the command every benchmark container runs.
func containerScript(marker string) []string {
	return []string{"sh", "-c", "trap 'exit 0' TERM; sleep " + marker + " & wait"}
}

// scanMarkers returns the markers (of want) that running processes carry;
// with sleepOnly, only sleep processes count.
func scanMarkers(want map[string]bool, sleepOnly bool, buf []byte) (map[string]bool, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, name := range names {
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		if m, sleep := markerOf(name, buf); m != "" && want[m] && (sleep || !sleepOnly) {
			found[m] = true
		}
	}
	return found, nil
}

// markerOf reads /proc/PID/cmdline and returns the marker it carries ("" if
// none) and whether the process is the sleep.
func markerOf(pid string, buf []byte) (string, bool) {
	fd, err := unix.Open("/proc/"+pid+"/cmdline", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false // gone meanwhile
	}
	n, _ := unix.Read(fd, buf)
	unix.Close(fd)
	if n <= 0 {
		return "", false // zombie or kernel thread
	}
	argv := bytes.Split(buf[:n], []byte{0})
	switch string(argv[0]) {
	case "sleep", "/bin/sleep":
		if len(argv) > 1 {
			return string(argv[1]), true
		}
	case "sh", "/bin/sh":
		if len(argv) > 2 {
			_, after, ok := bytes.Cut(argv[2], []byte("sleep "))
			if ok {
				if end := bytes.IndexByte(after, ' '); end >= 0 {
					return string(after[:end]), false
				}
			}
		}
	}
	return "", false
}

// waitMarkers polls until every marker runs (present) or none does (!present)
// and returns the time since t0 at the end of the scan that saw it.
func waitMarkers(ctx context.Context, t0 time.Time, timeout time.Duration, markers []string, present bool, st *scanStats) (time.Duration, error) {
	want := map[string]bool{}
	for _, m := range markers {
		want[m] = true
	}
	buf := make([]byte, 4096)
	if st.ev != nil {
		d, done, err := waitEvents(ctx, t0, timeout, want, present, st, buf)
		if done || err != nil {
			return d, err
		}
	}
	// Poll faster for small pods; a scan of /proc costs about a
	// millisecond per few hundred processes, on the same CPUs.
	interval := 2 * time.Millisecond
	if len(markers) > 4 {
		interval = 10 * time.Millisecond
	}
	for {
		s0 := time.Now()
		found, err := scanMarkers(want, present, buf)
		if err != nil {
			return 0, err
		}
		now := time.Now()
		st.n++
		st.total += now.Sub(s0)
		if present && len(found) == len(want) || !present && len(found) == 0 {
			return now.Sub(t0), nil
		}
		if now.Sub(t0) > timeout {
			return 0, fmt.Errorf("after %s: %d of %d containers running, want %s", timeout, len(found), len(want), map[bool]string{true: "all", false: "none"}[present])
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// waitEvents waits on st.ev until every marker runs (present) or none does
// (!present). A pod is only taken for gone once a scan of /proc agrees. It
// returns done=false when events were lost or the scan disagreed: the
// caller polls then.
func waitEvents(ctx context.Context, t0 time.Time, timeout time.Duration, want map[string]bool, present bool, st *scanStats, buf []byte) (d time.Duration, done bool, err error) {
	for {
		found, lost, changed := st.ev.state(want, present)
		if lost {
			return 0, false, nil
		}
		now := time.Now()
		switch {
		case present && len(found) == len(want):
			return now.Sub(t0), true, nil
		case !present && len(found) == 0:
			s0 := time.Now()
			left, err := scanMarkers(want, false, buf)
			st.n++
			st.total += time.Since(s0)
			if err != nil || len(left) > 0 {
				return 0, false, err
			}
			return now.Sub(t0), true, nil
		case now.Sub(t0) > timeout:
			return 0, false, nil // the poll reports what is missing
		}
		select {
		case <-ctx.Done():
			return 0, true, ctx.Err()
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// waitResidue polls until the system's residue is back to base.
func waitResidue(ctx context.Context, t0 time.Time, timeout time.Duration, s system, base map[string]int) (time.Duration, error) {
	for {
		r := s.residue()
		if maps.Equal(r, base) {
			return time.Since(t0), nil
		}
		if time.Since(t0) > timeout {
			return 0, fmt.Errorf("after %s: residue %v, want %v", timeout, r, base)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// memory sums Pss and Rss (bytes) of pids from /proc/PID/smaps_rollup and
// returns how many processes were read.
func memory(pids []int) (pss, rss int64, n int) {
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "Pss":
				pss += kb * 1024
			case "Rss":
				rss += kb * 1024
			}
		}
		f.Close()
		n++
	}
	return pss, rss, n
}

// cpuTicks returns utime+stime+cutime+cstime of pid in clock ticks.
func cpuTicks(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14, stime 15, cutime 16, cstime 17.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	var sum int64
	for _, k := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		sum += v
	}
	return sum, true
}

const clockTick = 10 * time.Millisecond // USER_HZ is 100 on Linux

// idleCPU returns the CPU time the system's overhead processes used over d,
// with nothing changing. Processes that appear or go meanwhile are counted
// for the part of the window they were seen in.
func idleCPU(ctx context.Context, s system, d time.Duration) (total time.Duration, byPID map[int]time.Duration) {
	before := map[int]int64{}
	for _, pid := range s.overhead() {
		if t, ok := cpuTicks(pid); ok {
			before[pid] = t
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	byPID = map[int]time.Duration{}
	for _, pid := range s.overhead() {
		if t, ok := cpuTicks(pid); ok {
			byPID[pid] = time.Duration(t-before[pid]) * clockTick
			total += byPID[pid]
		}
	}
	return total, byPID
}

// pidsWhere returns the PIDs for which match(pid, exe, argv) holds.
func pidsWhere(match func(pid int, exe string, argv []string) bool) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		exe, _ := os.Readlink("/proc/" + name + "/exe")
		argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if match(pid, exe, argv) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder counts the mounts whose mount point is under one of dirs.
func mountsUnder(dirs ...string) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return -1
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, d := range dirs {
			if f[4] == d || strings.HasPrefix(f[4], d+"/") {
				n++
				break
			}
		}
	}
	return n
}

// dirEntries counts the entries of dir (0 if it does not exist).
func dirEntries(dir string) int {
	e, _ := os.ReadDir(dir)
	return len(e)
}

// subdirs counts the directories below root, recursively (0 if absent).
func subdirs(root string) int {
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			n++
		}
		return nil
	})
	return n
}
