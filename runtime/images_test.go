package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/image"
)

func TestPullPolicy(t *testing.T) {
	tests := []struct {
		image  string
		policy corev1.PullPolicy
		want   corev1.PullPolicy
	}{
		{"busybox", "", corev1.PullAlways},
		{"busybox:latest", "", corev1.PullAlways},
		{"busybox:1.36", "", corev1.PullIfNotPresent},
		{"busybox@sha256:" + strings.Repeat("a", 64), "", corev1.PullIfNotPresent},
		{"busybox:latest@sha256:" + strings.Repeat("a", 64), "", corev1.PullIfNotPresent},
		{"rootfs:/img", "", corev1.PullIfNotPresent},
		{"oci-archive:/img.tar", "", corev1.PullIfNotPresent},
		{"busybox", corev1.PullNever, corev1.PullNever},
		{"busybox:1.36", corev1.PullAlways, corev1.PullAlways},
	}
	for _, tt := range tests {
		ref, err := image.ParseReference(tt.image)
		if err != nil {
			t.Fatal(err)
		}
		if got := pullPolicy(tt.policy, ref); got != tt.want {
			t.Errorf("%s with %q: %s, want %s", tt.image, tt.policy, got, tt.want)
		}
	}
}

// TestEnsureRootfsImage: a rootfs: image is present when its directory
// is, whatever the policy, and is never pulled.
func TestEnsureRootfsImage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image      string
		policy     corev1.PullPolicy
		wantReason string
		wantMsg    string
	}{
		{image: "rootfs:" + dir},
		{image: "rootfs:" + dir, policy: corev1.PullAlways},
		{image: "rootfs:" + dir, policy: corev1.PullNever},
		{image: "rootfs:" + dir + "/missing", wantReason: "ErrImagePull", wantMsg: "never pulled"},
		{image: "rootfs:" + file, wantReason: "ErrImagePull", wantMsg: "not a directory"},
		{image: "rootfs:" + dir + "/missing", policy: corev1.PullNever, wantReason: "ErrImageNeverPull",
			wantMsg: `Container image "rootfs:` + dir + `/missing" is not present with pull policy of Never`},
		{image: "busybox:1.36", policy: corev1.PullNever, wantReason: "ErrImageNeverPull"},
		{image: "busybox:1.36", wantReason: "ErrImagePull", wantMsg: "rootfs: images only"},
		{image: "Not A Reference", wantReason: "InvalidImageName"},
	}
	for _, tt := range tests {
		c := &corev1.Container{Name: "app", Image: tt.image, ImagePullPolicy: tt.policy}
		ref, err := Images{}.EnsureImage(context.Background(), testPod(), c)
		if tt.wantReason == "" {
			if err != nil || ref != tt.image {
				t.Errorf("%s (%s): %q, %v; want the reference", tt.image, tt.policy, ref, err)
				continue
			}
			img, err := Images{}.Image(context.Background(), ref)
			if err != nil || !slices.Equal(img.Layers, []string{dir}) {
				t.Errorf("Image(%s) = %+v, %v", ref, img, err)
			}
			continue
		}
		var se *reconcile.StartError
		if !errors.As(err, &se) || se.Reason != tt.wantReason || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s (%s): %v; want %s with %q", tt.image, tt.policy, err, tt.wantReason, tt.wantMsg)
		}
	}
}
