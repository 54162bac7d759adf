package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
)

// requireRoot skips end-to-end tests that run pods unless we are root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): runs the agent, which creates namespaces, links and cgroups")
	}
}

// vmTests are the end-to-end tests hack/vmtest.sh runs on Debian 12's 6.1
// kernel with pure cgroup v2: those whose outcome depends on the kernel or
// the cgroup version (namespaces and ID mapping, limits, OOM, metrics,
// bridge and nftables, adoption after kill -9). The others exercise logic
// that is the same on every kernel and would take many minutes under
// emulation.
var vmTests = map[string]bool{
	"TestPodNamespaces":            true,
	"TestRuntimeIdentity":          true,
	"TestRuntimeVolumes":           true,
	"TestRuntimeAgentCrash":        true,
	"TestMetricsCgroupLimits":      true,
	"TestMetricsOOMKilled":         true,
	"TestMetricsEndpoint":          true,
	"TestNetHostPortAndMasquerade": true,
}

// rootAgent is a testAgent that runs pods, on its own bridge, pod CIDR and
// cgroup parent so tests can run side by side and leave nothing behind.
type rootAgent struct {
	*testAgent
	Bridge, CgroupParent string
	PodCIDR              netip.Prefix
	// Image is the `image:` value of a busybox root filesystem.
	Image string
}

// newRootAgent prepares (does not start) an agent that runs pods. Its
// cleanup, registered first, removes every manifest, waits for the pods
// to go, stops the agent and removes the bridge, the nftables table and the
// cgroup parent: a failing test leaves nothing either.
func newRootAgent(t *testing.T, extra ...string) *rootAgent {
	t.Helper()
	requireRoot(t)
	if os.Getenv("PEAPOD_VMTEST") != "" && !vmTests[t.Name()] {
		t.Skip("hack/vmtest.sh runs the kernel-dependent subset (vmTests)")
	}
	rootfs, err := busyboxRootfs()
	if err != nil {
		t.Fatal(err)
	}
	suffix := randomHex(t, 4)
	a := &rootAgent{
		Bridge:       "ppe" + suffix,
		CgroupParent: "peapod-e2e-" + suffix,
		PodCIDR:      freePodCIDR(t),
		Image:        "rootfs:" + rootfs,
	}
	a.testAgent = newTestAgent(t, append([]string{
		"--bridge", a.Bridge, "--pod-cidr", a.PodCIDR.String(), "--cgroup-parent", a.CgroupParent,
	}, extra...)...)
	t.Cleanup(a.teardown)
	return a
}

func (a *rootAgent) teardown() {
	t := a.t
	if a.cmd == nil {
		a.start()
	}
	entries, _ := os.ReadDir(a.cfg.Manifests)
	for _, e := range entries {
		os.Remove(filepath.Join(a.cfg.Manifests, e.Name()))
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(a.pods()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(a.pods()); n > 0 {
		t.Errorf("teardown: %d pods still there 90s after their manifests were removed", n)
	}
	a.stop(syscall.SIGTERM)
	if l, err := netlink.LinkByName(a.Bridge); err == nil {
		netlink.LinkDel(l)
	}
	exec.Command("nft", "delete", "table", "ip", a.Bridge).Run()
	for _, dir := range cgroupDirs(a.CgroupParent) {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("teardown: cgroup parent left behind: %v", err)
		}
	}
}

// cgroupDirs returns the cgroup directories named rel in every hierarchy
// mounted under /sys/fs/cgroup (v1 controllers, or the v2 root).
func cgroupDirs(rel string) []string {
	dirs := []string{filepath.Join("/sys/fs/cgroup", rel)}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), rel))
		}
	}
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			found = append(found, d)
		}
	}
	return found
}

// containerPIDs returns the host PIDs in a container's cgroup.
func (a *rootAgent) containerPIDs(pod *corev1.Pod, container string) []int {
	a.t.Helper()
	rel := filepath.Join(a.CgroupParent, "pod"+string(pod.UID), container)
	for _, dir := range cgroupDirs(rel) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
		if len(pids) > 0 {
			return pids
		}
	}
	return nil
}

// mainPID returns the host PID of the container's main process: the one
// that is PID 1 in the container's PID namespace.
func (a *rootAgent) mainPID(pod *corev1.Pod, container string) int {
	a.t.Helper()
	var main int
	a.eventually("main process of "+pod.Name+"/"+container, 10*time.Second, func() error {
		for _, pid := range a.containerPIDs(pod, container) {
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
					main = pid
					return nil
				}
			}
		}
		return errors.New("no process is PID 1 in the container's cgroup")
	})
	return main
}

// running reports an error unless every container of the pod runs.
func running(p *corev1.Pod) error {
	if len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return fmt.Errorf("%d of %d container statuses", len(p.Status.ContainerStatuses), len(p.Spec.Containers))
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return fmt.Errorf("container %s is not running: %+v", cs.Name, cs.State)
		}
	}
	return nil
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePodCIDR picks a random 10.x.y.0/24 that no route on the host covers
// or overlaps, so pod traffic can never leave through a real interface.
func freePodCIDR(t *testing.T) netip.Prefix {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		x, _ := rand.Int(rand.Reader, big.NewInt(150))
		y, _ := rand.Int(rand.Reader, big.NewInt(256))
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + x.Int64()), byte(y.Int64()), 0}), 24)
		if !overlapsRoute(p, routes) {
			return p
		}
	}
	t.Fatal("no free 10.x.y.0/24 for the pods")
	return netip.Prefix{}
}

func overlapsRoute(p netip.Prefix, routes []netlink.Route) bool {
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		addr, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		ones, _ := r.Dst.Mask.Size()
		// The default route covers everything; a /24 of ours is more specific.
		if ones > 0 && netip.PrefixFrom(addr, ones).Overlaps(p) {
			return true
		}
	}
	return false
}
