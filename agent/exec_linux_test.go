package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExecContainer(t *testing.T) {
	pod := func(annotation string, names ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
		if annotation != "" {
			p.Annotations = map[string]string{defaultContainerAnnotation: annotation}
		}
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
		}
		return p
	}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		container string
		want      string
		note      bool
		wantErr   bool
	}{
		{"only container", pod("", "a"), "", "a", false, false},
		{"first of two, said", pod("", "a", "b"), "", "a", true, false},
		{"annotation", pod("b", "a", "b"), "", "b", false, false},
		{"named", pod("", "a", "b"), "b", "b", false, false},
		{"unknown", pod("", "a", "b"), "c", "", false, true},
		{"annotation names no container", pod("z", "a"), "", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, note, err := ExecContainer(tc.pod, tc.container)
			if (err != nil) != tc.wantErr || got != tc.want || (note != "") != tc.note {
				t.Errorf("ExecContainer = %q, %q, %v; want %q, note %v, error %v", got, note, err, tc.want, tc.note, tc.wantErr)
			}
		})
	}
}
