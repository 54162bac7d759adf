package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/shim"
)

// CreateSandbox implements reconcile.Runtime. The order makes every
// resource findable from the moment it exists, so a crash at any step is
// collected by RemovePod or New: the user-ID range first (New releases
// ranges without a pod dir), then pod.json, then the namespaces, cgroup
// and shim, which RemovePod finds through pod.json.
func (r *Runtime) CreateSandbox(ctx context.Context, pod *corev1.Pod) (*reconcile.PodState, error) {
	uid := pod.UID
	if uid == "" {
		return nil, errors.New("create sandbox: pod has no UID")
	}
	defer r.states.bump(uid)
	dir := r.podDir(uid)
	if st, ok := r.existingSandbox(ctx, pod); ok {
		return st, nil
	}
	var undo cleanups
	defer undo.runUnlessReleased(r.log.With("uid", uid))
	if usesUserNS(pod) {
		if _, err := r.ids.Allocate(uid); err != nil {
			return nil, err
		}
		undo.add(func() error { return r.ids.Release(uid) })
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pod state dir: %w", err)
	}
	undo.add(func() error { return removeTree(dir) })
	if err := writePod(dir, pod); err != nil {
		return nil, err
	}
	if err := r.createSandbox(ctx, pod, &undo); err != nil {
		return nil, err
	}
	// A shim that stopped answering is killed before its successor starts,
	// so that two never serve one pod; one that failed to start, or
	// reported too late, must not outlive the rollback.
	if err := killShim(dir); err != nil {
		return nil, err
	}
	undo.add(func() error { return killShim(dir) })
	if err := r.startShim(ctx, dir); err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	undo.release()
	r.watch(uid)
	r.log.Info("sandbox created", "pod", pod.Namespace+"/"+pod.Name, "uid", uid)
	return r.podState(ctx, dir)
}

// existingSandbox returns the pod's state when a sandbox with a live shim
// exists for it.
func (r *Runtime) existingSandbox(ctx context.Context, pod *corev1.Pod) (*reconcile.PodState, bool) {
	dir := r.podDir(pod.UID)
	if _, err := os.Stat(filepath.Join(dir, shim.PodFile)); err != nil {
		return nil, false
	}
	st, err := r.podState(ctx, dir)
	if err != nil || !st.Ready {
		return nil, false
	}
	r.watch(pod.UID)
	return st, true
}

// createSandbox makes the namespaces, per-pod files and the pod cgroup.
func (r *Runtime) createSandbox(ctx context.Context, pod *corev1.Pod, undo *cleanups) error {
	dir := r.podDir(pod.UID)
	hostname, err := podHostnameFor(pod)
	if err != nil {
		return err
	}
	sysctls, err := r.sandboxSysctls(pod)
	if err != nil {
		return err
	}
	cfg := sandbox.Config{
		Dir: dir, Hostname: hostname, HostNetwork: pod.Spec.HostNetwork,
		ResolvConf: r.opts.ResolvConf(pod), Sysctls: sysctls,
	}
	// Removing first: sandbox.Remove keeps dir while our files are in it.
	undo.add(func() error { return sandbox.Remove(dir) })
	if _, err := sandbox.Create(ctx, cfg); err != nil {
		return err
	}
	if r.cgroups == nil {
		return nil
	}
	cg, err := r.cgroups.Pod(pod.UID, pod)
	if err != nil {
		return err
	}
	undo.add(func() error { return errors.Join(cg.Kill(), cg.Remove()) })
	return nil
}

// usesUserNS tells whether the pod's containers get a user namespace:
// unless hostUsers is true, which is the opposite of Kubernetes' default
// and the reason peapod exists.
func usesUserNS(pod *corev1.Pod) bool {
	return pod.Spec.HostUsers == nil || !*pod.Spec.HostUsers
}

// podHostnameFor is the hostname the pod's UTS namespace gets: the host's
// for hostNetwork pods (they share the host's UTS namespace).
func podHostnameFor(pod *corev1.Pod) (string, error) {
	if pod.Spec.HostNetwork {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("read host name: %w", err)
		}
		return h, nil
	}
	return podHostname(pod), nil
}

func writePod(dir string, pod *corev1.Pod) error {
	b, err := json.Marshal(pod)
	if err != nil {
		return fmt.Errorf("encode pod: %w", err)
	}
	return shim.WriteFileAtomic(filepath.Join(dir, shim.PodFile), b, 0o600)
}

func readPod(dir string) (*corev1.Pod, error) {
	b, err := os.ReadFile(filepath.Join(dir, shim.PodFile))
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(b, &pod); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, shim.PodFile), err)
	}
	return &pod, nil
}

// hostResolvConf is the host's /etc/resolv.conf without loopback
// nameservers, which mean nothing in a pod's network namespace (kubelet
// drops them too).
func hostResolvConf(*corev1.Pod) []byte {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	return dropLoopbackNameservers(b)
}

func dropLoopbackNameservers(conf []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip, err := netip.ParseAddr(f[1]); err == nil && ip.IsLoopback() {
				continue
			}
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes()
}

// cleanups is a stack of undo steps for a multi-step acquisition.
type cleanups struct {
	steps    []func() error
	released bool
}

func (c *cleanups) add(f func() error) { c.steps = append(c.steps, f) }

// release keeps everything acquired: the acquisition succeeded.
func (c *cleanups) release() { c.released = true }

// runUnlessReleased undoes the steps in reverse order, logging failures:
// it runs on the error path, whose error the caller already returns.
func (c *cleanups) runUnlessReleased(log interface{ Warn(string, ...any) }) {
	if c.released {
		return
	}
	for i := len(c.steps) - 1; i >= 0; i-- {
		if err := c.steps[i](); err != nil {
			log.Warn("roll back sandbox creation", "err", err)
		}
	}
}
