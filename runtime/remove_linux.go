package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/logs"
	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/shim"
)

// stopSlack is what a stop may take beyond its grace period: the SIGKILL,
// the exit record and the answer.
const stopSlack = 10 * time.Second

// StopContainer implements reconcile.Runtime. A container its shim never
// started, or whose shim is gone (taking it along), is already stopped.
func (r *Runtime) StopContainer(ctx context.Context, uid types.UID, name string, grace time.Duration) error {
	defer r.states.bump(uid)
	dir := r.podDir(uid)
	ctx, cancel := context.WithTimeout(ctx, grace+stopSlack)
	defer cancel()
	c := shim.NewClient(dir)
	defer c.Close()
	_, err := c.Stop(ctx, name, grace)
	var remote *shim.RemoteError
	switch {
	case err == nil, errors.Is(err, shim.ErrNotFound):
		return nil
	case !errors.As(err, &remote) && c.Ping(ctx) != nil:
		return nil
	}
	return fmt.Errorf("stop container %s of pod %s: %w", name, uid, err)
}

// RemovePod implements reconcile.Runtime. It goes on past failures and
// removes pod.json last, so that a pod whose removal failed is still
// listed, and removed again.
func (r *Runtime) RemovePod(ctx context.Context, uid types.UID, grace time.Duration) error {
	defer r.states.bump(uid)
	dir := r.podDir(uid)
	r.unwatch(uid)
	pod, err := readPod(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pod %s: %w", uid, err)
	}
	errs := []error{r.stopShim(ctx, dir, grace)}
	if r.cgroups != nil {
		errs = append(errs, r.removeCgroup(uid, pod))
	}
	errs = append(errs, removeTree(r.podRoot(uid)))
	if pod != nil {
		errs = append(errs, removeTree(logs.PodDir(r.opts.LogDir, pod.Namespace, pod.Name, uid)))
	}
	if err := sandbox.Remove(dir); err != nil {
		// Removing the rest could hide namespace pins that are still
		// mounted: keep pod.json so that a retry comes back here.
		errs = append(errs, err)
	} else {
		errs = append(errs, removeTree(dir))
	}
	errs = append(errs, r.ids.Release(uid))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove pod %s: %w", uid, err)
	}
	r.log.Debug("pod removed", "uid", uid)
	return nil
}

// stopShim asks the shim to stop every container with grace and exit,
// and kills it if it does not.
func (r *Runtime) stopShim(ctx context.Context, dir string, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, grace+stopSlack)
	defer cancel()
	c := shim.NewClient(dir)
	defer c.Close()
	if c.Ping(ctx) != nil {
		// Dead already, or never started; make sure of it.
		return killShim(dir)
	}
	err := c.Shutdown(ctx, grace)
	if err != nil {
		r.log.Warn("shim shutdown failed; killing it", "dir", dir, "err", err)
	}
	// A shim that answered has stopped its containers and is exiting; a
	// shim that did not is killed, and its containers with it (Pdeathsig).
	return killShim(dir)
}

// killShim SIGKILLs the shim recorded in dir, if that PID still is that
// shim, and waits until it is gone.
func killShim(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, shim.PIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("read %s: %w", shim.PIDFile, err)
	}
	// A pidfd pins the process: once it is known to be our shim, the
	// signal cannot reach a process that reused the PID.
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open shim process: %w", err)
	}
	defer unix.Close(fd)
	if !shim.Serves(pid, dir) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill shim %d: %w", pid, err)
	}
	if err := shim.WaitExited(fd, 5*time.Second); err != nil {
		return fmt.Errorf("kill shim %d: %w", pid, err)
	}
	return nil
}

// removeCgroup kills what is left in the pod's cgroup and removes it.
func (r *Runtime) removeCgroup(uid types.UID, pod *corev1.Pod) error {
	if pod == nil {
		pod = &corev1.Pod{}
	}
	cg, err := r.cgroups.Pod(uid, pod)
	if err != nil {
		return err
	}
	return errors.Join(cg.Kill(), cg.Remove())
}

// collectGarbage removes what a reboot or a crash left: pod data on disk
// and pod state dirs without a pod.json (a CreateSandbox that died before
// writing it), then user-ID ranges and cgroups of pods that are gone.
func (r *Runtime) collectGarbage() error {
	live := map[types.UID]bool{}
	var errs []error
	entries, err := os.ReadDir(r.podsDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		dir := filepath.Join(r.podsDir(), e.Name())
		if _, err := os.Stat(filepath.Join(dir, shim.PodFile)); err == nil {
			live[types.UID(e.Name())] = true
			continue
		}
		r.log.Info("removing half-created pod", "uid", e.Name())
		errs = append(errs, killShim(dir), sandbox.Remove(dir), removeTree(dir))
	}
	roots, err := os.ReadDir(filepath.Join(r.opts.RootDir, "pods"))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range roots {
		if !live[types.UID(e.Name())] {
			r.log.Info("removing data of a pod that is gone", "uid", e.Name())
			errs = append(errs, removeTree(filepath.Join(r.opts.RootDir, "pods", e.Name())))
		}
	}
	errs = append(errs, r.ids.GC(live))
	if r.cgroups != nil {
		errs = append(errs, r.cgroups.GC(live))
	}
	return errors.Join(errs...)
}
