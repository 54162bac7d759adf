package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEscapeSignalOtherContainer has one container of a pod try to kill
// another by its host PID, which the test hands it through a shared volume,
// and to write to it through /proc: each container has its own PID
// namespace, so the PID names nothing it can reach and the other container
// lives on. Were the two to share a PID namespace (or the host's), the kill
// would succeed: both run as the same host user.
func TestEscapeSignalOtherContainer(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	shared := t.TempDir()
	a.writeManifest("esc.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: esc}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: shared, hostPath: {path: %s}}]
  containers:
  - {name: victim, image: %q, command: [sleep, "100000"]}
  - name: attacker
    image: %q
    volumeMounts: [{name: shared, mountPath: /shared}]
    command: [sh, -c, 'while [ ! -s /shared/pid ]; do sleep 0.1; done; p=$$(cat /shared/pid);
      kill -9 $$p && echo KILLED || echo kill-refused;
      ls /proc/$$p/root/ >/dev/null 2>&1 && echo SAW-ROOT || echo no-proc-entry;
      echo done; exec sleep 100000']
`, shared, a.Image, a.Image))
	pod := a.waitPod("default/esc", "running", 30*time.Second, running)
	victim := a.mainPID(pod, "victim")
	if err := os.WriteFile(filepath.Join(shared, "pid"), []byte(strconv.Itoa(victim)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := rtWaitLog(a, []string{"done"}, "esc", "-c", "attacker")
	if strings.Contains(out, "KILLED") || strings.Contains(out, "SAW-ROOT") || !strings.Contains(out, "kill-refused") {
		t.Errorf("attacker log:\n%s\nwant the kill refused and no /proc entry for the other container's PID", out)
	}
	if err := syscall.Kill(victim, 0); err != nil {
		t.Errorf("the victim container's process %d: %v, want it alive", victim, err)
	}
}
