package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/netsetup"
	"github.com/peapod/peapod/reconcile"
)

// listRuntime lists fixed pods.
type listRuntime struct {
	reconcile.Runtime
	pods []*reconcile.PodState
}

func (r *listRuntime) ListPods(context.Context) ([]*reconcile.PodState, error) { return r.pods, nil }

// scriptedKeeper runs one round per result, as Keep would, records the
// pods each round was given, and calls after once each round reported.
type scriptedKeeper struct {
	results []netsetup.RepairResult
	after   func(round int)
	pods    [][]netsetup.PodNetNS
}

func (k *scriptedKeeper) Keep(ctx context.Context, opts netsetup.KeepOptions) {
	for i, r := range k.results {
		opts.Lock.Lock()
		pods, _ := opts.Pods(ctx)
		k.pods = append(k.pods, pods)
		opts.Report(r)
		opts.Lock.Unlock()
		k.after(i)
	}
}

func podState(uid types.UID, netns string, hostNetwork bool) *reconcile.PodState {
	return &reconcile.PodState{
		Pod:       &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}, Spec: corev1.PodSpec{HostNetwork: hostNetwork}},
		NetNSPath: netns,
	}
}

func TestKeepReportsRepairsAndUnavailablePods(t *testing.T) {
	broken := errors.New("recreate veth: no netns")
	k := &scriptedKeeper{results: []netsetup.RepairResult{
		{Repairs: map[string]int{"bridge": 1, "veth": 2}, Unavailable: map[types.UID]error{"a": broken}},
		{Repairs: map[string]int{"veth": 1}, Unavailable: map[types.UID]error{}},
	}}
	rt := &listRuntime{pods: []*reconcile.PodState{
		podState("a", "/run/netns/a", false),
		podState("host", "", true),
	}}
	g := &guardedNetwork{net: &gcNetwork{}, rt: rt, keeper: k}
	reg := prometheus.NewRegistry()
	m := newRepairMetrics(reg)

	var sawBroken error
	var sawGauge float64
	k.after = func(round int) {
		if round == 0 {
			sawBroken, sawGauge = g.NetworkUnavailable("a"), testutil.ToFloat64(m.unavailable)
		}
	}
	changes := 0
	g.keep(context.Background(), slog.New(slog.DiscardHandler), m, func() { changes++ })
	if changes != 2 {
		t.Errorf("health changes signalled %d times, want 2 (pod a broken, then repaired)", changes)
	}

	if !errors.Is(sawBroken, broken) {
		t.Errorf("after round 1, NetworkUnavailable(a) = %v, want %v", sawBroken, broken)
	}
	if sawGauge != 1 {
		t.Errorf("after round 1, peapod_network_unavailable_pods = %v, want 1", sawGauge)
	}
	if err := g.NetworkUnavailable("a"); err != nil {
		t.Errorf("after round 2, NetworkUnavailable(a) = %v, want nil", err)
	}
	for _, pods := range k.pods {
		if len(pods) != 1 || pods[0].UID != "a" || pods[0].NetNSPath != "/run/netns/a" {
			t.Errorf("round given pods %v, want only a (hostNetwork pods have no netns to repair)", pods)
		}
	}
	want := `
# HELP peapod_network_repairs_total Repairs of the pods' host network after someone else changed it, by what was repaired.
# TYPE peapod_network_repairs_total counter
peapod_network_repairs_total{what="address"} 0
peapod_network_repairs_total{what="bridge"} 1
peapod_network_repairs_total{what="rule"} 0
peapod_network_repairs_total{what="sysctl"} 0
peapod_network_repairs_total{what="table"} 0
peapod_network_repairs_total{what="veth"} 3
# HELP peapod_network_unavailable_pods Running pods whose network is broken and could not be repaired.
# TYPE peapod_network_unavailable_pods gauge
peapod_network_unavailable_pods 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
