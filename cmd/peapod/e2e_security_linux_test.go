package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestRuntimeSecurityContext runs a hardened pod as the Kubernetes docs
// write them (non-root, no privilege escalation, read-only root, all
// capabilities dropped but one) with safe and allowed unsafe sysctls, and
// checks from inside and from the host that each setting took effect, and
// that the host's sysctls did not change. A runAsNonRoot pod that would
// run as root waits with kubelet's reason and message.
func TestRuntimeSecurityContext(t *testing.T) {
	a := newRootAgent(t, "--allowed-unsafe-sysctls", "net.core.somaxconn")
	sysctls := map[string]string{
		"net/ipv4/ip_local_port_range": "40000 40100",
		"net/core/somaxconn":           "1234",
		"kernel/shm_rmid_forced":       "1",
	}
	host := make(map[string]string)
	for p := range sysctls {
		host[p] = readSysctl(t, p)
	}
	a.start()
	script := `for s in net/ipv4/ip_local_port_range net/core/somaxconn kernel/shm_rmid_forced net/ipv4/ping_group_range; do ` +
		`echo "$s=` + "`cat /proc/sys/$s`" + `"; done; ` +
		`touch /x 2>/dev/null || echo root=read-only; touch /scratch/x && echo scratch=ok; ` +
		`echo uid=` + "`id -u`" + `; echo done; exec sleep 100000`
	a.writeManifest("hardened.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hardened}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    sysctls:
    - {name: net.ipv4.ip_local_port_range, value: "40000 40100"}
    - {name: net/core/somaxconn, value: "1234"}
    - {name: kernel.shm_rmid_forced, value: "1"}
    - {name: net.ipv4.ping_group_range, value: "0 2147483647"}
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: main
    image: %q
    command: [sh, -c, %q]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
`, a.Image, script))
	pod := a.waitPod("default/hardened", "running", 30*time.Second, running)
	pid := a.mainPID(pod, "main")
	out := rtWaitLog(a, []string{"done"}, "hardened")
	for _, want := range []string{
		"net/ipv4/ip_local_port_range=40000\t40100\n", "net/core/somaxconn=1234\n", "kernel/shm_rmid_forced=1\n",
		// The pod's whole group range, as the container's user namespace
		// reads the host group IDs the agent wrote.
		"net/ipv4/ping_group_range=0\t65535\n",
		"root=read-only\n", "scratch=ok\n", "uid=1000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("container log lacks %q:\n%s", want, out)
		}
	}
	for field, want := range map[string]string{
		"CapBnd": "0000000000000400", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1",
	} {
		if got := rtStatusField(t, pid, field); len(got) != 1 || got[0] != want {
			t.Errorf("%s of the container = %v, want %s", field, got, want)
		}
	}
	for p, v := range host {
		if got := readSysctl(t, p); got != v {
			t.Errorf("host %s changed from %q to %q", p, v, got)
		}
	}

	a.writeManifest("asroot.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: asroot}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: c, image: %q, command: [sleep, "100000"]}
`, a.Image))
	a.waitPod("default/asroot", "CreateContainerConfigError", 30*time.Second, func(p *corev1.Pod) error {
		cs, err := rtStatus(p, "c")
		if err != nil {
			return err
		}
		want := fmt.Sprintf(`container has runAsNonRoot and image will run as root (pod: "asroot_default(%s)", container: c)`, p.UID)
		if w := cs.State.Waiting; w == nil || w.Reason != "CreateContainerConfigError" || w.Message != want {
			return fmt.Errorf("state %+v, want waiting with CreateContainerConfigError: %s", cs.State, want)
		}
		return nil
	})
}

func readSysctl(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
