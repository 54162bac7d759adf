package agent

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLogFile(t *testing.T) {
	pod := func(statuses ...corev1.ContainerStatus) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1"}}
		for _, cs := range statuses {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: cs.Name})
		}
		p.Status.ContainerStatuses = statuses
		return p
	}
	app := corev1.ContainerStatus{Name: "app", RestartCount: 2, ContainerID: "peapod://x"}
	side := corev1.ContainerStatus{Name: "side", ContainerID: "peapod://y"}
	waiting := corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerError"}}}
	for _, tt := range []struct {
		name      string
		pod       *corev1.Pod
		container string
		previous  bool
		want      string // path, or a part of the error
		wantErr   bool
	}{
		{"only container", pod(app), "", false, "/logs/ns_web_u1/app/2.log", false},
		{"previous", pod(app), "app", true, "/logs/ns_web_u1/app/1.log", false},
		{"named", pod(app, side), "side", false, "/logs/ns_web_u1/side/0.log", false},
		{"several without -c", pod(app, side), "", false, "choose one with -c: app, side", true},
		{"unknown", pod(app, side), "db", false, `container "db" is not in pod ns/web`, true},
		{"no previous", pod(side), "", true, `previous terminated container "side" in pod ns/web not found`, true},
		{"never started", pod(waiting), "", false, "waiting to start: CreateContainerError", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := logFile("/logs", tt.pod, tt.container, tt.previous)
			switch {
			case tt.wantErr && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("logFile() = %q, %v; want an error with %q", got, err, tt.want)
			case !tt.wantErr && (err != nil || got != tt.want):
				t.Errorf("logFile() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
