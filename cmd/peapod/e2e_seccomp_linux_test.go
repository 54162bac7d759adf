package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// seccompPod is a pod of one container "c" that runs script, with the
// pod-level and container-level securityContext YAML given (may be "").
func seccompPod(name, image, podSC, ctrSC, script string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {%s}
  containers:
  - name: c
    image: %q
    securityContext: {%s}
    command: [sh, -c, %q]
`, name, podSC, image, ctrSC, script)
}

// waitingFor returns a condition: container c waits with reason and a
// message containing msg.
func waitingFor(reason, msg string) func(*corev1.Pod) error {
	return func(p *corev1.Pod) error {
		cs, err := rtStatus(p, "c")
		if err != nil {
			return err
		}
		if w := cs.State.Waiting; w == nil || w.Reason != reason || !strings.Contains(w.Message, msg) {
			return fmt.Errorf("state %+v, want waiting with %s and a message with %q", cs.State, reason, msg)
		}
		return nil
	}
}

// TestRuntimeSeccomp checks each seccompProfile as the agent applies it,
// from the host (/proc/PID/status) and from the container's log: the
// default is RuntimeDefault, a container's profile overrides its pod's,
// Localhost profiles come from --root/seccomp, and a profile that cannot
// be used keeps the container waiting with CreateContainerConfigError.
func TestRuntimeSeccomp(t *testing.T) {
	a := newRootAgent(t)
	profiles := filepath.Join(a.cfg.Root, "seccomp")
	if err := os.MkdirAll(profiles, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"no-mkdir.json": `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`,
		"broken.json":   `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_SOMETIMES"}]}`,
	} {
		if err := os.WriteFile(filepath.Join(profiles, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a.start()
	const sleep = "exec sleep 100000"
	mkdir := "mkdir /made 2>/dev/null && echo mkdir=ok || echo mkdir=denied; " + sleep
	unconfined := "seccompProfile: {type: Unconfined}"
	for name, m := range map[string]string{
		"dflt":     seccompPod("dflt", a.Image, "", "", sleep),
		"unconf":   seccompPod("unconf", a.Image, unconfined, "", sleep),
		"override": seccompPod("override", a.Image, unconfined, "seccompProfile: {type: RuntimeDefault}", sleep),
		"local":    seccompPod("local", a.Image, "", "seccompProfile: {type: Localhost, localhostProfile: no-mkdir.json}", mkdir),
		"broken":   seccompPod("broken", a.Image, "seccompProfile: {type: Localhost, localhostProfile: broken.json}", "", sleep),
		"missing":  seccompPod("missing", a.Image, "", "seccompProfile: {type: Localhost, localhostProfile: gone.json}", sleep),
		"apparmor": seccompPod("apparmor", a.Image, "", "appArmorProfile: {type: Localhost, localhostProfile: web}", sleep),
	} {
		a.writeManifest(name+".yaml", m)
	}
	for pod, want := range map[string]string{"dflt": "2", "unconf": "0", "override": "2", "local": "2"} {
		p := a.waitPod("default/"+pod, "running", 30*time.Second, running)
		if got := rtStatusField(t, a.mainPID(p, "c"), "Seccomp"); !slices.Equal(got, []string{want}) {
			t.Errorf("pod %s: Seccomp %v in /proc/PID/status, want %s", pod, got, want)
		}
	}
	rtWaitLog(a, []string{"mkdir=denied"}, "local")
	a.waitPod("default/broken", "CreateContainerConfigError", 30*time.Second,
		waitingFor("CreateContainerConfigError", "broken.json: syscalls [mkdir]: unknown action"))
	a.waitPod("default/missing", "CreateContainerConfigError", 30*time.Second,
		waitingFor("CreateContainerConfigError", "seccomp profile gone.json in "+profiles))
	a.waitPod("default/apparmor", "CreateContainerConfigError", 30*time.Second,
		waitingFor("CreateContainerConfigError", "AppArmor profile localhost/web cannot be applied"))
}

// TestRuntimeSeccompDefaultOff checks --seccomp-default=false: a container
// that names no profile runs Unconfined, one that names RuntimeDefault
// still gets it.
func TestRuntimeSeccompDefaultOff(t *testing.T) {
	a := newRootAgent(t, "--seccomp-default=false")
	a.start()
	const sleep = "exec sleep 100000"
	a.writeManifest("plain.yaml", seccompPod("plain", a.Image, "", "", sleep))
	a.writeManifest("asked.yaml", seccompPod("asked", a.Image, "seccompProfile: {type: RuntimeDefault}", "", sleep))
	for pod, want := range map[string]string{"plain": "0", "asked": "2"} {
		p := a.waitPod("default/"+pod, "running", 30*time.Second, running)
		if got := rtStatusField(t, a.mainPID(p, "c"), "Seccomp"); !slices.Equal(got, []string{want}) {
			t.Errorf("pod %s: Seccomp %v in /proc/PID/status, want %s", pod, got, want)
		}
	}
}
