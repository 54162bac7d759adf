package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// genAnnotation carries the generation of a pod's manifest: each edit
// bumps it (and so changes the pod's UID); the status shows which
// generation runs.
const genAnnotation = "chaos.peapod.io/gen"

// longPod is a pod that runs until removed: two containers (so that
// starts run concurrently), an emptyDir, and a hostPort when port > 0.
// The shell traps TERM so that removal does not wait out the grace period.
func longPod(image, name string, gen, port int) []byte {
	ports := ""
	if port > 0 {
		ports = fmt.Sprintf("\n    ports: [{containerPort: 8080, hostPort: %d}]", port)
	}
	return fmt.Appendf(nil, `apiVersion: v1
kind: Pod
metadata:
  name: %[2]s
  annotations: {%[5]s: "%[3]d"}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: main
    image: %[1]q
    command: [sh, -c, 'trap "exit 0" TERM; echo gen %[3]d >/data/gen; while :; do sleep 1; done']
    env: [{name: GEN, value: "%[3]d"}]
    volumeMounts: [{name: data, mountPath: /data}]%[4]s
  - name: side
    image: %[1]q
    command: [sh, -c, 'trap "exit 0" TERM; while :; do sleep 1; done']
`, image, name, gen, ports, genAnnotation)
}

// exitPod is a pod whose one container sleeps, then exits with code and
// is never restarted: its exit code must be reported, even when it exits
// while the agent is down.
func exitPod(image, name string, code int, after string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Pod
metadata: {name: %[2]s}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %[1]q
    command: [sh, -c, 'sleep %[4]s; exit %[3]d']
`, image, name, code, after)
}

// runningGen checks that p runs generation gen with every container
// running and ready.
func runningGen(p corev1.Pod, gen int) error {
	if g := p.Annotations[genAnnotation]; g != strconv.Itoa(gen) {
		return fmt.Errorf("pod %s runs generation %s, want %d", p.Name, g, gen)
	}
	return allRunning(p)
}

func allRunning(p corev1.Pod) error {
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("pod %s is %s: %s", p.Name, p.Status.Phase, waitingReasons(p))
	}
	if len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return fmt.Errorf("pod %s has %d container statuses for %d containers", p.Name, len(p.Status.ContainerStatuses), len(p.Spec.Containers))
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil || !cs.Ready {
			return fmt.Errorf("pod %s container %s not running and ready: %s", p.Name, cs.Name, waitingReasons(p))
		}
	}
	return nil
}

// waitingReasons summarises why a pod's containers are not running.
func waitingReasons(p corev1.Pod) string {
	s := ""
	if p.Status.Reason != "" || p.Status.Message != "" {
		s = fmt.Sprintf("[%s %s] ", p.Status.Reason, p.Status.Message)
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf("[%s: %s %s] ", c.Type, c.Reason, c.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf("[%s waiting: %s %s] ", cs.Name, w.Reason, w.Message)
		}
		if t := cs.State.Terminated; t != nil {
			s += fmt.Sprintf("[%s terminated: %d %s %s] ", cs.Name, t.ExitCode, t.Reason, t.Message)
		}
	}
	return s
}

// exitedWith checks that p's one container terminated with code and the
// pod reached its final phase.
func exitedWith(p corev1.Pod, code int) error {
	if len(p.Status.ContainerStatuses) != 1 {
		return fmt.Errorf("pod %s has %d container statuses", p.Name, len(p.Status.ContainerStatuses))
	}
	t := p.Status.ContainerStatuses[0].State.Terminated
	if t == nil {
		return fmt.Errorf("pod %s has not terminated: %s", p.Name, waitingReasons(p))
	}
	if int(t.ExitCode) != code {
		return permanent(fmt.Errorf("LOST EXIT CODE: pod %s terminated with exit code %d (%s %s), want %d", p.Name, t.ExitCode, t.Reason, t.Message, code))
	}
	want := corev1.PodFailed
	if code == 0 {
		want = corev1.PodSucceeded
	}
	if p.Status.Phase != want {
		return fmt.Errorf("pod %s is %s after exit code %d, want %s", p.Name, p.Status.Phase, code, want)
	}
	return nil
}

// checkIPs checks that every pod with an address has one inside the
// agent's CIDR and that no two pods share one (a lease bug).
func (a *testAgent) checkIPs(ctx context.Context) error {
	m, err := a.podMap(ctx)
	if err != nil {
		return err
	}
	seen := map[netip.Addr]string{}
	var errs []error
	for _, name := range sortedKeys(m) {
		p := m[name]
		if p.Status.PodIP == "" {
			continue
		}
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !a.cidr.Contains(ip) {
			errs = append(errs, fmt.Errorf("pod %s has address %q outside %s", name, p.Status.PodIP, a.cidr))
			continue
		}
		if other, ok := seen[ip]; ok {
			errs = append(errs, fmt.Errorf("pods %s and %s both have address %s", other, name, ip))
		}
		seen[ip] = name
	}
	return errors.Join(errs...)
}
