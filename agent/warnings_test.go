package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/manifests"
)

func TestWarningLogOncePerVersion(t *testing.T) {
	var buf bytes.Buffer
	w := newWarningLog(slog.New(slog.NewTextHandler(&buf, nil)))
	pod := func(uid types.UID, warnings ...string) *manifests.Pod {
		return &manifests.Pod{
			Pod:      &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: uid}},
			File:     "/etc/peapod/manifests/web.yaml",
			Warnings: warnings,
		}
	}
	const warning = "spec.priorityClassName: ignored: there is no scheduler or eviction"
	count := func() int { return strings.Count(buf.String(), "priorityClassName") }

	w.observe(manifests.Snapshot{Pods: []*manifests.Pod{pod("v1", warning)}})
	if count() != 1 || !strings.Contains(buf.String(), "pod=default/web") || !strings.Contains(buf.String(), "file=/etc/peapod/manifests/web.yaml") {
		t.Fatalf("after the pod appeared, log:\n%s", buf.String())
	}
	w.observe(manifests.Snapshot{Pods: []*manifests.Pod{pod("v1", warning)}})
	if count() != 1 {
		t.Errorf("the same version logged again:\n%s", buf.String())
	}
	w.observe(manifests.Snapshot{Pods: []*manifests.Pod{pod("v2", warning)}})
	if count() != 2 {
		t.Errorf("an edited pod's warnings were not logged:\n%s", buf.String())
	}
	w.observe(manifests.Snapshot{})
	w.observe(manifests.Snapshot{Pods: []*manifests.Pod{pod("v2", warning)}})
	if count() != 3 {
		t.Errorf("a pod that came back was not logged again:\n%s", buf.String())
	}
}
