package cgroups

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Kubelet's constants for turning Kubernetes CPU quantities into CFS values
// (pkg/kubelet/cm/helpers_linux.go), kept identical so a pod gets the same
// cgroup values here as on a kubelet node.
const (
	minShares     = 2
	maxShares     = 262144
	sharesPerCPU  = 1024
	milliCPUToCPU = 1000

	// quotaPeriod is the CFS period in microseconds (100 ms).
	quotaPeriod = 100000
	// minQuota is the smallest quota the kernel accepts, in microseconds.
	minQuota = 1000
)

// DefaultPodPidsLimit is the pod pids limit when Options.PodPidsLimit is 0.
// pids.max counts threads, not processes: 4096 leaves room for a thread-heavy
// JVM or worker pool, while a fork bomb in one pod can take at most an eighth
// of the kernel's default pid_max (32768) and so cannot starve the host or
// the agent of PIDs. Kubelet's default is unlimited, which is unsafe on a
// host without a separate node-level limit.
const DefaultPodPidsLimit = 4096

// limits is what peapod writes into one cgroup, independent of the cgroup
// version.
type limits struct {
	// memory is the memory limit in bytes; 0 means unlimited.
	memory int64
	// noSwap turns swap off; set with every memory limit, so that the limit
	// bounds what the cgroup holds rather than what it holds in RAM.
	noSwap bool
	// cpuQuota is the CFS quota in microseconds per quotaPeriod; 0 means
	// unlimited.
	cpuQuota int64
	// cpuShares is the v1 cpu.shares value (v2 converts it to cpu.weight).
	cpuShares uint64
	// pids is the pids.max value: 0 leaves it unset, -1 means "max".
	pids int64
}

// milliCPUToShares converts a CPU request to cpu.shares as kubelet does:
// 1024 shares per CPU, clamped to [2, 262144]; no request gets the minimum.
func milliCPUToShares(milliCPU int64) uint64 {
	if milliCPU <= 0 {
		return minShares
	}
	shares := milliCPU * sharesPerCPU / milliCPUToCPU
	return uint64(min(max(shares, minShares), maxShares))
}

// milliCPUToQuota converts a CPU limit to a CFS quota over period (both in
// microseconds) as kubelet does, raised to the kernel's 1 ms minimum. No limit
// gives 0.
func milliCPUToQuota(milliCPU, period int64) int64 {
	if milliCPU <= 0 {
		return 0
	}
	return max(milliCPU*period/milliCPUToCPU, minQuota)
}

// sharesToWeight maps cpu.shares [2, 262144] linearly onto cgroup v2
// cpu.weight [1, 10000] (KEP-2254).
func sharesToWeight(shares uint64) uint64 {
	shares = min(max(shares, minShares), maxShares)
	return 1 + ((shares-minShares)*9999)/(maxShares-minShares)
}

// weightToShares is the inverse of sharesToWeight, as cAdvisor reports
// cpu.weight in shares.
func weightToShares(weight uint64) uint64 {
	weight = min(max(weight, 1), 10000)
	return minShares + ((weight-1)*(maxShares-minShares))/9999
}

// cpuRequest returns the container's CPU request in millicores, defaulted
// to its limit when only the limit is set (Kubernetes API defaulting, which
// static pods read from files never went through).
func cpuRequest(c *corev1.Container) int64 {
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		return q.MilliValue()
	}
	return c.Resources.Limits.Cpu().MilliValue()
}

// containerLimits returns the limits for one container's cgroup.
func containerLimits(c *corev1.Container) limits {
	mem := c.Resources.Limits.Memory().Value()
	return limits{
		memory:    mem,
		noSwap:    mem > 0,
		cpuQuota:  milliCPUToQuota(c.Resources.Limits.Cpu().MilliValue(), quotaPeriod),
		cpuShares: milliCPUToShares(cpuRequest(c)),
	}
}

// podLimits returns the limits for the pod cgroup, as kubelet's
// ResourceConfigForPod: CPU shares from the sum of requests; CPU quota and
// memory limit from the sum of limits, but only when every container
// (init containers included) declares that limit; pids from pidsLimit.
func podLimits(pod *corev1.Pod, pidsLimit int64) limits {
	l := limits{
		cpuShares: milliCPUToShares(podAmount(pod, cpuRequest)),
		pids:      pidsLimit,
	}
	if allDeclare(pod, corev1.ResourceCPU) {
		l.cpuQuota = milliCPUToQuota(podAmount(pod, func(c *corev1.Container) int64 {
			return c.Resources.Limits.Cpu().MilliValue()
		}), quotaPeriod)
	}
	if allDeclare(pod, corev1.ResourceMemory) {
		l.memory = podAmount(pod, func(c *corev1.Container) int64 {
			return c.Resources.Limits.Memory().Value()
		})
	}
	return l
}

// allDeclare reports whether every container of the pod sets a limit on r.
func allDeclare(pod *corev1.Pod, r corev1.ResourceName) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if q, ok := cs[i].Resources.Limits[r]; !ok || q.Cmp(resource.Quantity{}) == 0 {
				return false
			}
		}
	}
	return true
}

// podAmount sums amount over the pod's containers the way Kubernetes sizes a
// pod: app containers and sidecars (init containers with restartPolicy
// Always) run together and add up; an ordinary init container runs alone
// next to the sidecars started before it, so it only raises the total when
// that is larger.
func podAmount(pod *corev1.Pod, amount func(*corev1.Container) int64) int64 {
	var sidecars, initPeak int64
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars += amount(c)
			continue
		}
		initPeak = max(initPeak, sidecars+amount(c))
	}
	total := sidecars
	for i := range pod.Spec.Containers {
		total += amount(&pod.Spec.Containers[i])
	}
	return max(total, initPeak)
}
