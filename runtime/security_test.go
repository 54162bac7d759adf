package runtime

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/image"
	"github.com/peapod/peapod/runtime/sandbox"
)

func TestVerifyRunAsNonRoot(t *testing.T) {
	root, user := int64(0), int64(1000)
	tests := []struct {
		name      string
		pod, ctr  *corev1.SecurityContext // pod's as far as the fields overlap
		imageUID  *int64
		imageUser string
		wantErr   string
	}{
		{name: "not asked", imageUID: &root},
		{name: "pod asks, image runs as root", pod: &corev1.SecurityContext{RunAsNonRoot: new(true)}, imageUID: &root,
			wantErr: `container has runAsNonRoot and image will run as root (pod: "web_default(1234)", container: app)`},
		{name: "container asks, image runs as root", ctr: &corev1.SecurityContext{RunAsNonRoot: new(true)}, imageUID: &root,
			wantErr: `container has runAsNonRoot and image will run as root (pod: "web_default(1234)", container: app)`},
		{name: "container lifts the pod's", pod: &corev1.SecurityContext{RunAsNonRoot: new(true)},
			ctr: &corev1.SecurityContext{RunAsNonRoot: new(false)}, imageUID: &root},
		{name: "pod's runAsUser", pod: &corev1.SecurityContext{RunAsNonRoot: new(true), RunAsUser: &user}, imageUID: &root},
		{name: "container's runAsUser over the pod's root", pod: &corev1.SecurityContext{RunAsNonRoot: new(true), RunAsUser: &root},
			ctr: &corev1.SecurityContext{RunAsUser: &user}, imageUID: &root},
		{name: "runAsUser 0", ctr: &corev1.SecurityContext{RunAsNonRoot: new(true), RunAsUser: &root},
			wantErr: `container's runAsUser breaks non-root policy (pod: "web_default(1234)", container: app)`},
		{name: "image user numeric, not root", ctr: &corev1.SecurityContext{RunAsNonRoot: new(true)}, imageUID: &user},
		{name: "image user a name", ctr: &corev1.SecurityContext{RunAsNonRoot: new(true)}, imageUser: "nginx",
			wantErr: `container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: "web_default(1234)", container: app)`},
	}
	for _, tt := range tests {
		pod := testPod()
		if tt.pod != nil {
			pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: tt.pod.RunAsNonRoot, RunAsUser: tt.pod.RunAsUser}
		}
		c := &corev1.Container{Name: "app", SecurityContext: tt.ctr}
		err := verifyRunAsNonRoot(pod, c, tt.imageUID, tt.imageUser)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var se *reconcile.StartError
		if !errors.As(err, &se) || se.Reason != "CreateContainerConfigError" || se.Err.Error() != tt.wantErr {
			t.Errorf("%s: error %v, want CreateContainerConfigError %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestBuildSpecSecurityContext(t *testing.T) {
	pod := testPod()
	c := &corev1.Container{
		Name: "app", Image: "rootfs:/img", Command: []string{"true"},
		SecurityContext: &corev1.SecurityContext{
			Capabilities:           &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem: new(true),
			RunAsNonRoot:           new(true),
			RunAsUser:              new(int64(1000)),
		},
	}
	sb := sandbox.Layout("/run/peapod/pods/1234", false)
	spec, err := buildSpec(&specInput{pod: pod, c: c, sandbox: sb, image: &image.Image{Layers: []string{"/img"}}, user: &execUser{UID: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"NET_BIND_SERVICE"}, spec.CapAdd); diff != "" {
		t.Errorf("CapAdd (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ALL"}, spec.CapDrop); diff != "" {
		t.Errorf("CapDrop (-want +got):\n%s", diff)
	}
	if !spec.ReadOnlyRootfs || spec.UID != 1000 {
		t.Errorf("ReadOnlyRootfs = %v, UID = %d; want true, 1000", spec.ReadOnlyRootfs, spec.UID)
	}
	wantMounts := []container.Mount{
		{Source: sb.Hosts, Destination: "/etc/hosts"},
		{Source: sb.Hostname, Destination: "/etc/hostname", ReadOnly: true},
		{Source: sb.ResolvConf, Destination: "/etc/resolv.conf", ReadOnly: true},
		{Source: sb.Shm, Destination: "/dev/shm"},
		{Source: sb.Mqueue, Destination: "/dev/mqueue"},
		{Source: sb.Sys, Destination: "/sys", ReadOnly: true},
	}
	if diff := cmp.Diff(wantMounts, spec.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}

	// allowPrivilegeEscalation: only false sets no_new_privs, as kubelet's
	// AddNoNewPrivileges decides.
	for _, tt := range []struct {
		allow *bool
		want  bool
	}{{nil, false}, {new(true), false}, {new(false), true}} {
		c.SecurityContext.AllowPrivilegeEscalation = tt.allow
		spec, err := buildSpec(&specInput{pod: pod, c: c, sandbox: sb, image: &image.Image{Layers: []string{"/img"}}, user: &execUser{UID: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		if spec.NoNewPrivileges != tt.want {
			t.Errorf("allowPrivilegeEscalation %v: NoNewPrivileges = %v, want %v", tt.allow, spec.NoNewPrivileges, tt.want)
		}
	}

	c.SecurityContext.RunAsUser = nil
	_, err = buildSpec(&specInput{pod: pod, c: c, sandbox: sb, image: &image.Image{Layers: []string{"/img"}}, user: &execUser{UID: 1000}})
	var se *reconcile.StartError
	if !errors.As(err, &se) || se.Reason != "CreateContainerConfigError" {
		t.Errorf("runAsNonRoot without runAsUser on a rootfs image: error %v, want CreateContainerConfigError", err)
	}
}
