package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestProbeCost measures what httpGet readiness probes cost the agent: 50
// pods serving HTTP, first without probes, then with one probe each every
// second, and the agent's CPU time over the same window in both. It takes
// minutes and measures rather than checks, so it runs only with
// PEAPOD_PROBE_COST=1; the figures go to the test log.
func TestProbeCost(t *testing.T) {
	if os.Getenv("PEAPOD_PROBE_COST") == "" {
		t.Skip("a measurement: set PEAPOD_PROBE_COST=1 to run it")
	}
	const pods = 50
	window := 30 * time.Second
	a := newRootAgent(t, "--log-level", "info")
	a.start()
	// Pods start ten at a time, and the first set goes before the second
	// comes, so that a loaded test machine does not time the shims out.
	measure := func(probe bool) (user, sys time.Duration) {
		for i := range pods {
			a.writeManifest(fmt.Sprintf("cost-%d.yaml", i), costPod(a.Image, i, probe))
			if i%10 != 9 {
				continue
			}
			for j := i - 9; j <= i; j++ {
				a.waitPod(fmt.Sprintf("default/cost-%d", j), "ready", 5*time.Minute, func(p *corev1.Pod) error {
					if err := running(p); err != nil {
						return err
					}
					if !p.Status.ContainerStatuses[0].Ready {
						return fmt.Errorf("not ready")
					}
					return nil
				})
			}
		}
		time.Sleep(10 * time.Second) // let the starts' work settle
		u0, s0 := cpuTime(t, a.cmd.Process.Pid)
		time.Sleep(window)
		u1, s1 := cpuTime(t, a.cmd.Process.Pid)
		for i := range pods {
			a.removeManifest(fmt.Sprintf("cost-%d.yaml", i))
		}
		a.eventually("the pods gone", 5*time.Minute, func() error {
			if n := len(a.pods()); n > 0 {
				return fmt.Errorf("%d pods left", n)
			}
			return nil
		})
		return u1 - u0, s1 - s0
	}
	idleUser, idleSys := measure(false)
	user, sys := measure(true)
	idle, probing := idleUser+idleSys, user+sys
	probes := float64(pods) * window.Seconds()
	t.Logf("agent CPU over %s with %d pods: %s without probes (%.2f%% of a core), %s with an httpGet probe each per second (%.2f%% of a core; user %s, system %s)",
		window, pods, idle, 100*idle.Seconds()/window.Seconds(), probing, 100*probing.Seconds()/window.Seconds(), user, sys)
	t.Logf("httpGet probes: %.2f%% of a core for %d probes/s, %.0f µs of agent CPU per probe",
		100*(probing-idle).Seconds()/window.Seconds(), pods, float64((probing-idle).Microseconds())/probes)
}

// cpuTime returns the user and system CPU time of a process.
func cpuTime(t *testing.T, pid int) (user, sys time.Duration) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command, which may hold spaces: utime and stime
	// are the 14th and 15th fields of the line, in clock ticks (100/s).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime) * 10 * time.Millisecond, time.Duration(stime) * 10 * time.Millisecond
}

func costPod(image string, i int, probe bool) string {
	p := ""
	if probe {
		p = "    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}\n"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: cost-%d}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: %q
    command: [sh, -c, 'mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 8080 -h /w']
`, i, image) + p
}
