package main

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// twoContainerPod is a pod of two sleeping busybox containers.
func twoContainerPod(name, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - {name: a, image: %q, command: [sleep, "100000"]}
  - {name: b, image: %q, command: [sleep, "100000"]}
`, name, image, image)
}

func nsLink(t *testing.T, pid int, ns string) string {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// TestPodNamespaces drops a two-container pod and checks its namespaces
// from outside: the containers share net, ipc and uts, and each has its own
// pid, mnt and user namespace; all differ from the host's. Removing the
// manifest removes the pod.
func TestPodNamespaces(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("ns.yaml", twoContainerPod("ns", a.Image))
	pod := a.waitPod("default/ns", "running", 30*time.Second, running)

	pa, pb := a.mainPID(pod, "a"), a.mainPID(pod, "b")
	self := os.Getpid()
	for _, ns := range []string{"net", "ipc", "uts"} {
		if nsLink(t, pa, ns) != nsLink(t, pb, ns) {
			t.Errorf("containers a and b do not share the %s namespace", ns)
		}
		if nsLink(t, pa, ns) == nsLink(t, self, ns) {
			t.Errorf("the pod shares the host's %s namespace", ns)
		}
	}
	for _, ns := range []string{"pid", "mnt", "user", "cgroup"} {
		la, lb, host := nsLink(t, pa, ns), nsLink(t, pb, ns), nsLink(t, self, ns)
		if la == lb || la == host || lb == host {
			t.Errorf("%s namespaces not private: a=%s b=%s host=%s", ns, la, lb, host)
		}
	}

	a.removeManifest("ns.yaml")
	a.eventually("pod gone", 30*time.Second, func() error {
		if p := a.pod("default/ns"); p != nil {
			return fmt.Errorf("pod still listed: %s", p.Status.Phase)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pa)); err == nil {
			return fmt.Errorf("process %d still runs", pa)
		}
		return nil
	})
}
