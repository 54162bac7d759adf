package runtime

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
)

func seccompPod(pod, ctr *corev1.SeccompProfile) (*corev1.Pod, *corev1.Container) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}
	if pod != nil {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: pod}
	}
	c := &corev1.Container{Name: "app"}
	if ctr != nil {
		c.SecurityContext = &corev1.SecurityContext{SeccompProfile: ctr}
	}
	return p, c
}

func profile(t corev1.SeccompProfileType, localhost ...string) *corev1.SeccompProfile {
	p := &corev1.SeccompProfile{Type: t}
	if len(localhost) > 0 {
		p.LocalhostProfile = &localhost[0]
	}
	return p
}

func TestSeccompProgram(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, seccompDir)
	if err := os.MkdirAll(filepath.Join(dir, "team"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"team/no-mkdir.json": `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}`,
		"broken.json":        `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [`,
		"notify.json":        `{"defaultAction": "SCMP_ACT_NOTIFY"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "escape.json")); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{opts: Options{RootDir: root}, log: slog.New(slog.DiscardHandler)}
	def, err := r.seccomp.RuntimeDefault(container.DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	unconfined, runtimeDefault := profile(corev1.SeccompProfileTypeUnconfined), profile(corev1.SeccompProfileTypeRuntimeDefault)
	for _, tc := range []struct {
		name      string
		pod, ctr  *corev1.SeccompProfile
		noDefault bool
		want      string // "default", "none", "other", or an error's text
	}{
		{name: "unset", want: "default"},
		{name: "unset without --seccomp-default", noDefault: true, want: "none"},
		{name: "pod RuntimeDefault without --seccomp-default", pod: runtimeDefault, noDefault: true, want: "default"},
		{name: "pod Unconfined", pod: unconfined, want: "none"},
		{name: "container overrides pod", pod: unconfined, ctr: runtimeDefault, want: "default"},
		{name: "container Unconfined", pod: runtimeDefault, ctr: unconfined, want: "none"},
		{name: "Localhost", ctr: profile(corev1.SeccompProfileTypeLocalhost, "team/no-mkdir.json"), want: "other"},
		{name: "Localhost missing", pod: profile(corev1.SeccompProfileTypeLocalhost, "gone.json"), want: "seccomp profile gone.json in " + dir + ": no such file"},
		{name: "Localhost invalid", ctr: profile(corev1.SeccompProfileTypeLocalhost, "broken.json"), want: "broken.json: decode seccomp profile"},
		{name: "Localhost unsupported", ctr: profile(corev1.SeccompProfileTypeLocalhost, "notify.json"), want: "notification is not supported"},
		{name: "Localhost directory", ctr: profile(corev1.SeccompProfileTypeLocalhost, "team"), want: "not a regular file"},
		{name: "Localhost backstep", ctr: profile(corev1.SeccompProfileTypeLocalhost, "../seccomp/team/no-mkdir.json"), want: "the path leaves the directory"},
		{name: "Localhost absolute", ctr: profile(corev1.SeccompProfileTypeLocalhost, "/etc/passwd"), want: "the path leaves the directory"},
		{name: "Localhost symlink out", ctr: profile(corev1.SeccompProfileTypeLocalhost, "escape.json"), want: "the path leaves the directory"},
		{name: "Localhost without name", ctr: profile(corev1.SeccompProfileTypeLocalhost), want: "without a localhostProfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.opts.NoSeccompDefault = tc.noDefault
			pod, c := seccompPod(tc.pod, tc.ctr)
			p, err := r.seccompProgram(pod, c)
			var got string
			switch {
			case err != nil:
				var se *reconcile.StartError
				if !errors.As(err, &se) || se.Reason != "CreateContainerConfigError" {
					t.Errorf("error %v is not a CreateContainerConfigError", err)
				}
				got = err.Error()
			case p == nil:
				got = "none"
			case p == def:
				got = "default"
			default:
				got = "other"
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckAppArmor(t *testing.T) {
	r := &Runtime{log: slog.New(slog.DiscardHandler)}
	local := "k8s-apparmor-example-deny-write"
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		wantErr bool
	}{
		{"none", &corev1.Pod{}, false},
		{"RuntimeDefault", &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{
			AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}}}}, false},
		{"Localhost", &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{
			AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: &local}}}}, true},
		{"annotation localhost", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			appArmorAnnotation + "app": "localhost/" + local}}}, true},
		{"annotation of another container", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			appArmorAnnotation + "other": "localhost/" + local}}}, false},
		{"annotation unconfined", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			appArmorAnnotation + "app": "unconfined"}}}, false},
	} {
		err := r.checkAppArmor(tc.pod, &corev1.Container{Name: "app"})
		var se *reconcile.StartError
		if tc.wantErr != (err != nil) || err != nil && (!errors.As(err, &se) || se.Reason != "CreateContainerConfigError" || !strings.Contains(err.Error(), local)) {
			t.Errorf("%s: got %v, want error: %v (a CreateContainerConfigError naming the profile)", tc.name, err, tc.wantErr)
		}
	}
}
