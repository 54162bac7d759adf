package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Local storage limits, checked from outside: a pod that writes past its
// emptyDir's sizeLimit, and one whose container writes past its
// ephemeral-storage limit in its writable layer, are evicted with
// kubelet's reason and message and their data removed; a pod within its
// limits keeps running while the agent measures it. The agent measures
// every 10 s, so each wait allows several passes.

// diskPod is a pod of one or more containers running script, with spec
// lines (indented two spaces) added.
func diskPod(name, spec string, containers ...string) string {
	m := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  terminationGracePeriodSeconds: 1\n%s  containers:\n", name, spec)
	for _, c := range containers {
		m += c
	}
	return m
}

func diskContainer(name, image, script, extra string) string {
	return fmt.Sprintf("  - name: %s\n    image: %q\n    command: [sh, -c, %q]\n%s", name, image, script, extra)
}

// diskEvicted waits until the pod is Failed with reason Evicted and
// returns it.
func diskEvicted(a *rootAgent, key string) *corev1.Pod {
	a.t.Helper()
	return a.waitPod(key, "evicted", 90*time.Second, func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "Evicted" {
			return fmt.Errorf("phase %s, reason %q, message %q", p.Status.Phase, p.Status.Reason, p.Status.Message)
		}
		return nil
	})
}

// diskCheckEvicted checks an evicted pod's message, that its processes
// are gone and that its data on disk went with it.
func diskCheckEvicted(a *rootAgent, p *corev1.Pod, message string, pids ...int) {
	a.t.Helper()
	if p.Status.Message != message {
		a.t.Errorf("%s: message %q, want %q", p.Name, p.Status.Message, message)
	}
	rtWaitGone(a, p.Name+"'s containers to be killed", pids...)
	a.eventually(p.Name+"'s data under --root to go", 30*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(a.cfg.Root, "pods", string(p.UID))); !os.IsNotExist(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
}

func TestDiskLimits(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	// The writes go through dd from /dev/zero: real blocks, not holes.
	fill := `dd if=/dev/zero of=/data/blob bs=1M count=50 2>/dev/null; echo written; exec sleep 100000`
	a.writeManifest("fill.yaml", diskPod("fill", "  volumes: [{name: data, emptyDir: {sizeLimit: 10Mi}}]\n",
		diskContainer("app", a.Image, fill, "    volumeMounts: [{name: data, mountPath: /data}]\n")))
	// app's 60 MiB stay within the pod's total of 150Mi, not its own 50Mi.
	layer := `dd if=/dev/zero of=/blob bs=1M count=60 2>/dev/null; echo written; exec sleep 100000`
	a.writeManifest("layer.yaml", diskPod("layer", "",
		diskContainer("app", a.Image, layer, "    resources: {limits: {ephemeral-storage: 50Mi}}\n"),
		diskContainer("other", a.Image, "exec sleep 100000", "    resources: {limits: {ephemeral-storage: 100Mi}}\n")))
	calm := `dd if=/dev/zero of=/data/blob bs=1M count=4 2>/dev/null; dd if=/dev/zero of=/blob bs=1M count=4 2>/dev/null; echo written; exec sleep 100000`
	a.writeManifest("calm.yaml", diskPod("calm", "  volumes: [{name: data, emptyDir: {sizeLimit: 10Mi}}]\n",
		diskContainer("app", a.Image, calm, "    volumeMounts: [{name: data, mountPath: /data}]\n"+
			"    resources: {limits: {ephemeral-storage: 20Mi}, requests: {ephemeral-storage: 10Mi}}\n")))

	// fill and layer write fast and may be evicted before the test sees
	// them run: their main PID is known only if it did.
	pids := map[string]int{}
	for _, name := range []string{"fill", "layer", "calm"} {
		p := a.waitPod("default/"+name, "running or evicted", 60*time.Second, func(p *corev1.Pod) error {
			if name != "calm" && p.Status.Reason == "Evicted" {
				return nil
			}
			return running(p)
		})
		if p.Status.Reason != "Evicted" {
			pids[name] = a.mainPID(p, "app")
		}
	}
	calmPod := a.pod("default/calm")
	rtWaitLog(a, []string{"written"}, "-c", "app", "calm")
	since := len(a.log.String())

	p := diskEvicted(a, "default/fill")
	diskCheckEvicted(a, p, `Usage of EmptyDir volume "data" exceeds the limit "10Mi". `, pids["fill"])
	if cs, err := rtStatus(p, "app"); err != nil || cs.State.Terminated == nil || cs.Ready {
		t.Errorf("fill's container: %+v (%v), want terminated", cs, err)
	}
	p = diskEvicted(a, "default/layer")
	diskCheckEvicted(a, p, `Container app exceeded its local ephemeral storage limit "50Mi". `, pids["layer"])

	// calm wrote 8 MiB of its 20Mi: two passes after its writes saw them
	// and left it running.
	a.eventually("two measurements of calm after its writes", 60*time.Second, func() error {
		var seen []float64
		for _, l := range mfLogLines(a, since, "measured local storage") {
			if l["uid"] == string(calmPod.UID) {
				seen = append(seen, l["bytes"].(float64))
			}
		}
		if len(seen) < 2 {
			return fmt.Errorf("measured %d times", len(seen))
		}
		if seen[len(seen)-1] < 8<<20 {
			t.Fatalf("calm measured at %v bytes, want at least the 8 MiB it wrote", seen[len(seen)-1])
		}
		return nil
	})
	p = a.pod("default/calm")
	if err := running(p); err != nil || p.Status.Reason != "" {
		t.Errorf("calm within its limits: %v, reason %q", err, p.Status.Reason)
	}
	if cs, _ := rtStatus(p, "app"); cs.RestartCount != 0 || a.mainPID(p, "app") != pids["calm"] {
		t.Errorf("calm's container was restarted: restartCount %d", cs.RestartCount)
	}

	// fill stays evicted: its manifest is unchanged.
	if p := a.pod("default/fill"); p == nil || p.Status.Reason != "Evicted" || len(a.containerPIDs(p, "app")) > 0 {
		t.Errorf("fill after the others' checks: %+v, want still evicted and not running", p)
	}
	out, code := runPeapod(t, "ps", "--state", a.cfg.State)
	shown := false
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == "fill" && f[3] == "Evicted" {
			shown = true
		}
	}
	if code != 0 || !shown {
		t.Errorf("peapod ps (exit %d):\n%s\nwant fill shown Evicted", code, out)
	}
}
