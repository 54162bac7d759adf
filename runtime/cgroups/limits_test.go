package cgroups

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestMilliCPUToShares(t *testing.T) {
	for _, tc := range []struct {
		milli int64
		want  uint64
	}{
		{0, 2}, {1, 2}, {2, 2}, {100, 102}, {500, 512}, {1000, 1024},
		{256000, 262144}, {300000, 262144},
	} {
		if got := milliCPUToShares(tc.milli); got != tc.want {
			t.Errorf("milliCPUToShares(%d) = %d, want %d", tc.milli, got, tc.want)
		}
	}
}

func TestMilliCPUToQuota(t *testing.T) {
	for _, tc := range []struct {
		milli, want int64
	}{
		{0, 0}, {1, 1000}, {10, 1000}, {11, 1100}, {250, 25000}, {1500, 150000},
	} {
		if got := milliCPUToQuota(tc.milli, quotaPeriod); got != tc.want {
			t.Errorf("milliCPUToQuota(%d) = %d, want %d", tc.milli, got, tc.want)
		}
	}
}

func TestSharesToWeight(t *testing.T) {
	for _, tc := range []struct {
		shares, weight, back uint64
	}{
		{2, 1, 2},
		{102, 4, 80},
		{512, 20, 500},
		{1024, 39, 998},
		{262144, 10000, 262144},
	} {
		if got := sharesToWeight(tc.shares); got != tc.weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", tc.shares, got, tc.weight)
		}
		if got := weightToShares(tc.weight); got != tc.back {
			t.Errorf("weightToShares(%d) = %d, want %d", tc.weight, got, tc.back)
		}
	}
}

// ctr returns a container with the given limits and requests.
func ctr(name string, limits, requests corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Limits: limits, Requests: requests}}
}

// res returns a resource list; an empty string leaves that resource out.
func res(cpu, mem string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		l[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return l
}

func TestContainerLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    corev1.Container
		want limits
	}{
		{"none", ctr("c", nil, nil), limits{cpuShares: 2}},
		{"cpu limit defaults the request", ctr("c", res("500m", ""), nil), limits{cpuQuota: 50000, cpuShares: 512}},
		{"cpu request and limit", ctr("c", res("2", ""), res("250m", "")), limits{cpuQuota: 200000, cpuShares: 256}},
		{"request only", ctr("c", nil, res("100m", "1Gi")), limits{cpuShares: 102}},
		{"memory limit turns swap off", ctr("c", res("", "64Mi"), nil), limits{memory: 64 << 20, noSwap: true, cpuShares: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, containerLimits(&tc.c), cmp.AllowUnexported(limits{})); diff != "" {
				t.Errorf("containerLimits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodLimits(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := ctr("sidecar", res("100m", "16Mi"), nil)
	sidecar.RestartPolicy = &always
	for _, tc := range []struct {
		name       string
		init, ctrs []corev1.Container
		want       limits
	}{
		{
			name: "all limited: sums",
			ctrs: []corev1.Container{ctr("a", res("500m", "64Mi"), nil), ctr("b", res("250m", "32Mi"), res("100m", ""))},
			want: limits{memory: 96 << 20, cpuQuota: 75000, cpuShares: 614, pids: 4096},
		},
		{
			name: "one without memory limit: no pod memory limit",
			ctrs: []corev1.Container{ctr("a", res("500m", "64Mi"), nil), ctr("b", res("250m", ""), nil)},
			want: limits{cpuQuota: 75000, cpuShares: 768, pids: 4096},
		},
		{
			name: "best effort",
			ctrs: []corev1.Container{ctr("a", nil, nil)},
			want: limits{cpuShares: 2, pids: 4096},
		},
		{
			name: "init container larger than the app containers",
			init: []corev1.Container{ctr("init", res("2", "1Gi"), nil)},
			ctrs: []corev1.Container{ctr("a", res("500m", "64Mi"), nil)},
			want: limits{memory: 1 << 30, cpuQuota: 200000, cpuShares: 2048, pids: 4096},
		},
		{
			name: "init container without limit: no pod limits",
			init: []corev1.Container{ctr("init", nil, nil)},
			ctrs: []corev1.Container{ctr("a", res("500m", "64Mi"), nil)},
			want: limits{cpuShares: 512, pids: 4096},
		},
		{
			name: "sidecar adds to the app containers and to later init containers",
			init: []corev1.Container{sidecar, ctr("init", res("1", "64Mi"), nil)},
			ctrs: []corev1.Container{ctr("a", res("500m", "64Mi"), nil)},
			want: limits{memory: 80 << 20, cpuQuota: 110000, cpuShares: 1126, pids: 4096},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: tc.init, Containers: tc.ctrs}}
			if diff := cmp.Diff(tc.want, podLimits(pod, 4096), cmp.AllowUnexported(limits{})); diff != "" {
				t.Errorf("podLimits (-want +got):\n%s", diff)
			}
		})
	}
}
