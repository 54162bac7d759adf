package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// The fault mode's agent has its --root and --state on small tmpfs mounts
// of its own, which it fills up or makes read-only.
const (
	faultRootSize  = 48 << 20
	faultStateSize = 8 << 20
	faultInodes    = 4096
)

// mountFaultDirs mounts a small tmpfs over the agent's --root and
// --state (both under this run's temp dir, never the host's).
func mountFaultDirs(a *testAgent) ([]string, error) {
	for _, m := range []struct {
		dir  string
		size int
	}{{a.root, faultRootSize}, {a.state, faultStateSize}} {
		opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755", m.size, faultInodes)
		if err := unix.Mount("tmpfs", m.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return nil, fmt.Errorf("mount a tmpfs on %s: %w", m.dir, err)
		}
	}
	return []string{a.root, a.state}, nil
}

// runFaults kills shims (agent up and down) and fills up, then makes
// read-only, the agent's root and state dirs. A pod whose shim died must
// be reported (exit 137) and, if its policy says so, run again; a pod
// that cannot be created on a full or read-only dir must say why and
// start once the fault is gone, while the pods already running keep
// running.
func runFaults(ctx context.Context, o *options, rng *rand.Rand, a *testAgent) (figures, error) {
	if err := a.writeManifest("canary.yaml", longPod(a.image, "canary", 1, 0)); err != nil {
		return nil, err
	}
	if err := a.writeManifest("never.yaml", neverPod(a.image, "never")); err != nil {
		return nil, err
	}
	err := a.waitPods(ctx, 90*time.Second, "canary and never running", func(m map[string]corev1.Pod) error {
		return errors.Join(allRunning(m["canary"]), allRunning(m["never"]))
	})
	if err != nil {
		return nil, err
	}
	shimKills := 0
	restarts := func(m map[string]corev1.Pod) int32 {
		var n int32
		for _, cs := range m["canary"].Status.ContainerStatuses {
			n += cs.RestartCount
		}
		return n
	}

	// A shim killed while the agent runs.
	m, err := a.podMap(ctx)
	if err != nil {
		return nil, err
	}
	before := restarts(m)
	if err := a.killShim(m["canary"]); err != nil {
		return nil, err
	}
	shimKills++
	if err := a.killShim(m["never"]); err != nil {
		return nil, err
	}
	shimKills++
	err = a.waitPods(ctx, 2*time.Minute, "canary running again and never reported dead after their shims were killed", func(m map[string]corev1.Pod) error {
		if n := restarts(m); n <= before {
			return fmt.Errorf("canary restarts %d, was %d: %s", n, before, waitingReasons(m["canary"]))
		}
		return errors.Join(allRunning(m["canary"]), exitedWith(m["never"], 137))
	})
	if err != nil {
		return nil, fmt.Errorf("shim kill with the agent up: %w", err)
	}

	// A shim killed while the agent is down.
	m, err = a.podMap(ctx)
	if err != nil {
		return nil, err
	}
	before = restarts(m)
	a.kill9()
	if err := a.killShim(m["canary"]); err != nil {
		return nil, err
	}
	shimKills++
	if err := sleep(ctx, randDur(rng, 0, time.Second)); err != nil {
		return nil, err
	}
	if err := a.start(ctx); err != nil {
		return nil, err
	}
	err = a.waitPods(ctx, 2*time.Minute, "canary running again after its shim was killed while the agent was down", func(m map[string]corev1.Pod) error {
		if n := restarts(m); n <= before {
			return fmt.Errorf("canary restarts %d, was %d: %s", n, before, waitingReasons(m["canary"]))
		}
		return allRunning(m["canary"])
	})
	if err != nil {
		return nil, fmt.Errorf("shim kill with the agent down: %w", err)
	}

	// Full, then read-only, root and state dirs.
	var failures []error
	for i, f := range []struct {
		what, dir, want string
		fault, undo     func(dir string) error
	}{
		{"full --root", a.root, "no space left", fill, unfill},
		{"full --state", a.state, "no space left", fill, unfill},
		{"read-only --root", a.root, "read-only", remountRO, remountRW},
		{"read-only --state", a.state, "read-only", bindRO, unbind},
	} {
		if err := a.fault(ctx, o, fmt.Sprintf("fault-%d", i), f.what, f.dir, f.want, f.fault, f.undo); err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", f.what, err))
		}
		if err := a.alive(); err != nil {
			return nil, errors.Join(append(failures, err)...)
		}
	}
	return figures{fmt.Sprintf("%d shim kills", shimKills), "4 dir faults"}, errors.Join(failures...)
}

// fault applies a fault to dir, drops a new pod that must report want
// and not run, checks the canary keeps running, undoes the fault, and
// waits for the new pod to run.
func (a *testAgent) fault(ctx context.Context, o *options, name, what, dir, want string, fault, undo func(string) error) error {
	if err := fault(dir); err != nil {
		return fmt.Errorf("apply the fault: %w", err)
	}
	undone := false
	defer func() {
		if !undone {
			undo(dir)
		}
	}()
	if err := a.writeManifest(name+".yaml", longPod(a.image, name, 1, 0)); err != nil {
		return err
	}
	var errs []error
	err := a.waitPods(ctx, time.Minute, name+" to report "+want, func(m map[string]corev1.Pod) error {
		p, ok := m[name]
		if !ok {
			return errors.New("no pod yet")
		}
		if allRunning(p) == nil {
			return permanent(fmt.Errorf("pod %s runs despite the %s", name, what))
		}
		if why := waitingReasons(p); !strings.Contains(strings.ToLower(why), want) {
			return fmt.Errorf("pod %s status does not say %q: %s", name, want, why)
		}
		return nil
	})
	errs = append(errs, err)
	m, err := a.podMap(ctx)
	if err != nil {
		return err
	}
	errs = append(errs, allRunning(m["canary"]))
	if err := undo(dir); err != nil {
		return fmt.Errorf("undo the fault: %w", err)
	}
	undone = true
	errs = append(errs, a.waitPods(ctx, 2*time.Minute, name+" running once the fault is gone", func(m map[string]corev1.Pod) error {
		return errors.Join(allRunning(m[name]), allRunning(m["canary"]))
	}))
	o.vlogf("faults: %s: %v", what, errors.Join(errs...))
	return errors.Join(append(errs, a.removeManifest(name+".yaml"))...)
}

// killShim kills the shim of pod p with SIGKILL.
func (a *testAgent) killShim(p corev1.Pod) error {
	b, err := os.ReadFile(filepath.Join(a.state, "pods", string(p.UID), "shim.pid"))
	if err != nil {
		return fmt.Errorf("shim of pod %s: %w", p.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("shim of pod %s: %w", p.Name, err)
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmd), string(p.UID)) && !strings.Contains(string(cmd), a.state) {
		return fmt.Errorf("shim of pod %s: process %d is %q, not its shim", p.Name, pid, cmd)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

const fillFile, fillDir = "chaos-fill", "chaos-fill.d"

// fill writes a file until dir's file system has no block left, then
// creates empty files until it has no inode left (a directory costs no
// block on a tmpfs, only an inode).
func fill(dir string) error {
	f, err := os.Create(filepath.Join(dir, fillFile))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return err
			}
			break
		}
	}
	if err := os.Mkdir(filepath.Join(dir, fillDir), 0o755); err != nil {
		return err
	}
	for i := 0; ; i++ {
		g, err := os.Create(filepath.Join(dir, fillDir, strconv.Itoa(i)))
		if errors.Is(err, syscall.ENOSPC) {
			return nil
		}
		if err != nil {
			return err
		}
		g.Close()
	}
}

func unfill(dir string) error {
	return errors.Join(os.Remove(filepath.Join(dir, fillFile)), os.RemoveAll(filepath.Join(dir, fillDir)))
}

// remountRO makes dir's file system read-only; the kernel refuses while
// a file on it is open for writing.
func remountRO(dir string) error {
	return unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

func remountRW(dir string) error {
	return unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// bindRO covers dir with a read-only bind mount of itself (with the
// mounts under it, so the pods' namespace pins stay visible): every path
// opened under dir is read-only, while the shims' open files (which make
// remountRO fail) stay writable. unbind takes it away.
func bindRO(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		return err
	}
	return nil
}

func unbind(dir string) error { return unix.Unmount(dir, unix.MNT_DETACH) }

// neverPod runs until removed and is never restarted.
func neverPod(image, name string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Pod
metadata: {name: %[2]s}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %[1]q
    command: [sh, -c, 'trap "exit 0" TERM; while :; do sleep 1; done']
`, image, name)
}
