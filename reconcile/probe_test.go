package reconcile

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestProbeThresholds feeds raw results to the state machine and checks
// what it publishes: a result counts once it came threshold times in a
// row, and a failed liveness or startup probe stops until its container's
// next attempt.
func TestProbeThresholds(t *testing.T) {
	const (
		s = success
		f = failure
		x = unknown // held back
	)
	for _, tc := range []struct {
		name               string
		kind               probeKind
		success, failure   int32
		raw                []probeResult
		want               []probeResult
		wantHoldAfterFinal bool
	}{
		{"readiness defaults: one success, three failures", readinessProbe, 0, 0,
			[]probeResult{s, f, f, f, f, s}, []probeResult{s, x, x, f, f, s}, false},
		{"readiness successThreshold 2", readinessProbe, 2, 1,
			[]probeResult{s, s, f, s, f, s, s}, []probeResult{x, s, f, x, f, x, s}, false},
		{"a success resets the failure run", readinessProbe, 1, 3,
			[]probeResult{f, f, s, f, f, f}, []probeResult{x, x, s, x, x, f}, false},
		{"liveness holds after a counted failure", livenessProbe, 1, 2,
			[]probeResult{f, s, f, f}, []probeResult{x, s, x, f}, true},
		{"startup holds after a counted failure", startupProbe, 1, 1,
			[]probeResult{f}, []probeResult{f}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &probeState{kind: tc.kind, spec: &corev1.Probe{SuccessThreshold: tc.success, FailureThreshold: tc.failure}}
			var got []probeResult
			for _, r := range tc.raw {
				pub, ok := st.observe(r)
				if !ok {
					pub = x
				}
				got = append(got, pub)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("published (-want +got):\n%s", diff)
			}
			if st.onHold != tc.wantHoldAfterFinal {
				t.Errorf("onHold = %v, want %v", st.onHold, tc.wantHoldAfterFinal)
			}
		})
	}
}

// TestProbeDue checks the initial delay and the startup gating: liveness
// and readiness wait for the container to have started, the startup probe
// stops then.
func TestProbeDue(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kind       probeKind
		delay      int32
		sinceStart time.Duration
		started    bool
		want       bool
	}{
		{"liveness at once", livenessProbe, 0, 0, true, true},
		{"liveness before initialDelaySeconds", livenessProbe, 5, 4900 * time.Millisecond, true, false},
		{"liveness at initialDelaySeconds", livenessProbe, 5, 5 * time.Second, true, true},
		{"liveness before the startup probe passed", livenessProbe, 0, time.Minute, false, false},
		{"readiness before the startup probe passed", readinessProbe, 0, time.Minute, false, false},
		{"readiness once started", readinessProbe, 0, time.Minute, true, true},
		{"startup until started", startupProbe, 0, time.Minute, false, true},
		{"startup after started", startupProbe, 0, time.Minute, true, false},
		{"startup before initialDelaySeconds", startupProbe, 10, time.Second, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &probeState{kind: tc.kind, spec: &corev1.Probe{InitialDelaySeconds: tc.delay}}
			if got := st.due(tc.sinceStart, tc.started); got != tc.want {
				t.Errorf("due(%s, started=%v) = %v, want %v", tc.sinceStart, tc.started, got, tc.want)
			}
		})
	}
	st := &probeState{kind: livenessProbe, spec: &corev1.Probe{FailureThreshold: 1}}
	st.observe(failure)
	if st.due(time.Hour, true) {
		t.Error("a liveness probe that failed is still due")
	}
}
