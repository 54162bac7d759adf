package agent

import "testing"

func TestImageLabel(t *testing.T) {
	for in, want := range map[string]string{
		"nginx:1.27":                    "docker.io/library/nginx:1.27",
		"busybox":                       "docker.io/library/busybox:latest",
		"ghcr.io/org/app:v1":            "ghcr.io/org/app:v1",
		"127.0.0.1:5000/team/svc:v3":    "127.0.0.1:5000/team/svc:v3",
		"rootfs:/var/lib/peapod/rootfs": "rootfs:/var/lib/peapod/rootfs",
	} {
		if got := imageLabel(in); got != want {
			t.Errorf("imageLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
