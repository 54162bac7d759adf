package reconcile

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The probe state machine, kubelet's prober worker without its goroutine:
// when a probe runs and which of its results count.

// probeKind is which of a container's probes a state belongs to.
type probeKind string

const (
	livenessProbe  probeKind = "Liveness"
	readinessProbe probeKind = "Readiness"
	startupProbe   probeKind = "Startup"
)

// probeResult is a published probe outcome; unknown is the state before a
// startup probe has an answer.
type probeResult int

const (
	unknown probeResult = iota
	success
	failure
)

// Kubernetes' probe defaults, applied where the manifest leaves zero.
const (
	defaultPeriod           = 10 * time.Second
	defaultProbeTimeout     = time.Second
	defaultSuccessThreshold = 1
	defaultFailureThreshold = 3
)

// probeOf returns the container's probe of kind, nil if it has none.
func probeOf(c *corev1.Container, kind probeKind) *corev1.Probe {
	switch kind {
	case livenessProbe:
		return c.LivenessProbe
	case readinessProbe:
		return c.ReadinessProbe
	default:
		return c.StartupProbe
	}
}

// initialResult is what a probe reports before its first counted result:
// kubelet assumes a container live, not ready and not started.
func initialResult(kind probeKind) probeResult {
	switch kind {
	case livenessProbe:
		return success
	case readinessProbe:
		return failure
	default:
		return unknown
	}
}

func period(p *corev1.Probe) time.Duration {
	if p.PeriodSeconds > 0 {
		return time.Duration(p.PeriodSeconds) * time.Second
	}
	return defaultPeriod
}

func probeTimeout(p *corev1.Probe) time.Duration {
	if p.TimeoutSeconds > 0 {
		return time.Duration(p.TimeoutSeconds) * time.Second
	}
	return defaultProbeTimeout
}

func threshold(v int32, def int) int {
	if v > 0 {
		return int(v)
	}
	return def
}

// probeState is one probe of one container attempt. The zero value with
// kind and spec set is a probe that has not run. It is owned by one probe
// goroutine.
type probeState struct {
	kind probeKind
	spec *corev1.Probe
	// last is the latest raw result, run how many times in a row it came.
	last probeResult
	run  int
	// onHold stops a liveness or startup probe that failed: the container
	// is being killed, and its next attempt gets a new probe.
	onHold bool
}

// due reports whether the probe runs on a tick sinceStart after its
// container started, given whether the container has started (its startup
// probe, if any, succeeded). Kubelet never probes before
// initialDelaySeconds, holds liveness and readiness until the container
// has started, and stops the startup probe then.
func (s *probeState) due(sinceStart time.Duration, started bool) bool {
	if s.onHold || int32(sinceStart/time.Second) < s.spec.InitialDelaySeconds {
		return false
	}
	if s.kind == startupProbe {
		return !started
	}
	return started
}

// observe counts one raw result and returns the result to publish; ok is
// false while the thresholds hold it back, and the published result stays
// what it was.
func (s *probeState) observe(r probeResult) (_ probeResult, ok bool) {
	if r == s.last {
		s.run++
	} else {
		s.last, s.run = r, 1
	}
	if (r == failure && s.run < threshold(s.spec.FailureThreshold, defaultFailureThreshold)) ||
		(r == success && s.run < threshold(s.spec.SuccessThreshold, defaultSuccessThreshold)) {
		return r, false
	}
	if r == failure && s.kind != readinessProbe {
		s.onHold, s.run = true, 0
	}
	return r, true
}
