package main

// End-to-end acceptance of the kubelet paths and kube-state-metrics series:
// a real Prometheus scrapes the agent through the shipped
// docs/prometheus.yml and evaluates the kubernetes-mixin's recording
// rules (testdata/kubernetes-mixin-k8s-rules.yaml) over them.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// getBody returns the body of a GET that must answer 200.
func getBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v\n%s", url, resp.StatusCode, err, b)
	}
	return b
}

// TestMonitoringMixinRules runs a pod with limits and requests and one that
// crashes, checks the kubelet paths (/pods, /healthz, and promtool on every
// metrics path), then has Prometheus scrape the agent through the shipped
// config and checks each mixin rule's series for the pod: its node, its
// memory limit, its CPU request; and for the crashing container its
// restarts and the expression of the mixin's KubePodCrashLooping alert.
func TestMonitoringMixinRules(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("limited.yaml", cgPod("limited", a.Image, cgSleep,
		"    resources: {limits: {memory: 32Mi, cpu: 200m}, requests: {cpu: 100m, memory: 16Mi}}\n", ""))
	a.writeManifest("crash.yaml", cgPod("crash", a.Image, `[sh, -c, "exit 3"]`, "", ""))
	pod := a.waitPod("default/limited", "running", 30*time.Second, running)
	node := pod.Spec.NodeName
	if node == "" {
		t.Fatal("limited has no spec.nodeName")
	}

	var list corev1.PodList
	if err := json.Unmarshal(getBody(t, a.metrics+"/pods"), &list); err != nil || list.Kind != "PodList" {
		t.Fatalf("/pods: kind %q, %v", list.Kind, err)
	}
	if names := podNames(list.Items); !strings.Contains(names, "default/limited") {
		t.Errorf("/pods lists %s, want default/limited among them", names)
	}
	if b := getBody(t, a.metrics+"/metrics/resource"); !strings.Contains(string(b), `container_memory_working_set_bytes{container="limited",namespace="default",pod="limited"}`) {
		t.Errorf("/metrics/resource without limited's working set:\n%s", b)
	}
	if b := getBody(t, a.metrics+"/healthz"); string(b) != "ok\n" {
		t.Errorf("/healthz = %q", b)
	}
	for _, path := range []string{"/metrics/cadvisor", "/metrics/resource", "/metrics/state", "/metrics"} {
		t.Run("promtool"+strings.ReplaceAll(path, "/", "_"), func(t *testing.T) {
			cgPromtoolCheck(t, getBody(t, a.metrics+path))
		})
	}

	config, err := os.ReadFile("../../docs/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile("testdata/kubernetes-mixin-k8s-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The user's one-line edit: the target is this agent's address.
	target := `targets: &peapod ["127.0.0.1:10265"]`
	if strings.Count(string(config), target) != 1 {
		t.Fatalf("docs/prometheus.yml has no line %s to change", target)
	}
	cfg := strings.Replace(string(config), target, fmt.Sprintf("targets: &peapod [%q]", strings.TrimPrefix(a.metrics, "http://")), 1)
	cfg = "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yaml]\n" + cfg
	prom := startPrometheus(t, cfg, map[string][]byte{"rules.yaml": rules})

	sel := `{namespace="default",pod="limited",container="limited"}`
	checks := []struct {
		query string
		ok    func(float64) bool
		want  string
	}{
		{`up{job="kubelet",metrics_path="/metrics/cadvisor"}`, func(v float64) bool { return v == 1 }, "1"},
		{`up{job="kube-state-metrics"}`, func(v float64) bool { return v == 1 }, "1"},
		{`up{job="peapod"}`, func(v float64) bool { return v == 1 }, "1"},
		{fmt.Sprintf(`node_namespace_pod_container:container_memory_working_set_bytes{namespace="default",pod="limited",container="limited",node=%q}`, node),
			func(v float64) bool { return v > 0 && v <= 32<<20 }, "in (0, 32Mi]"},
		{fmt.Sprintf(`node_namespace_pod_container:container_memory_rss{namespace="default",pod="limited",container="limited",node=%q}`, node),
			func(v float64) bool { return v >= 0 }, ">= 0"},
		{fmt.Sprintf(`node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate{namespace="default",pod="limited",container="limited",node=%q}`, node),
			func(v float64) bool { return v >= 0 }, ">= 0"},
		{`cluster:namespace:pod_memory:active:kube_pod_container_resource_limits` + sel, func(v float64) bool { return v == 32<<20 }, "33554432"},
		{`cluster:namespace:pod_memory:active:kube_pod_container_resource_requests` + sel, func(v float64) bool { return v == 16<<20 }, "16777216"},
		{`cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests` + sel, func(v float64) bool { return v == 0.1 }, "0.1"},
		{`namespace_memory:kube_pod_container_resource_limits:sum{namespace="default"}`, func(v float64) bool { return v == 32<<20 }, "33554432"},
		{`kube_pod_container_status_restarts_total{job="kube-state-metrics",namespace="default",pod="crash",container="crash"}`,
			func(v float64) bool { return v >= 1 }, ">= 1"},
		{`kube_pod_container_status_last_terminated_reason{job="kube-state-metrics",pod="crash",reason="Error"}`,
			func(v float64) bool { return v == 1 }, "1"},
		// The expression of the mixin's KubePodCrashLooping alert
		// (alerts/apps_alerts.libsonnet), narrowed to the pod.
		{`max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff", job="kube-state-metrics", pod="crash"}[5m]) >= 1`,
			func(v float64) bool { return v == 1 }, "1"},
	}
	for _, c := range checks {
		// The first restart comes after a 10 s back-off; rules need two
		// scrapes of both jobs.
		a.eventually(c.query, 90*time.Second, func() error {
			v, err := cgPromQuery(prom, c.query)
			if err != nil {
				return err
			}
			if !c.ok(v) {
				return fmt.Errorf("%s = %v, want %s (scrape errors: %s)", c.query, v, c.want, promScrapeErrors(prom))
			}
			return nil
		})
	}

	// A deleted pod's series leave every path at once.
	a.removeManifest("limited.yaml")
	a.eventually("limited's series gone from every path", 30*time.Second, func() error {
		if a.pod("default/limited") != nil {
			return fmt.Errorf("pod still listed")
		}
		for _, path := range []string{"/metrics/cadvisor", "/metrics/resource", "/metrics/state", "/metrics"} {
			if b := getBody(t, a.metrics+path); strings.Contains(string(b), `pod="limited"`) {
				return fmt.Errorf("%s still has series of pod limited", path)
			}
		}
		return nil
	})
}

func podNames(pods []corev1.Pod) string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	return strings.Join(names, ", ")
}

// promScrapeErrors returns the last scrape error of each failing target, to
// tell why a check waits.
func promScrapeErrors(prom string) string {
	resp, err := http.Get(prom + "/api/v1/targets")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string
				LastError string
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err.Error()
	}
	var errs []string
	for _, t := range r.Data.ActiveTargets {
		if t.LastError != "" {
			errs = append(errs, t.ScrapeURL+": "+t.LastError)
		}
	}
	return strings.Join(errs, "; ")
}
